//! Sign-in through a real OpenID provider: `tests/oidc_provider/provider.mjs` (panva's
//! oidc-provider on Node) started on loopback per test, and a small cookie-keeping HTTP client
//! that goes through its login page as a browser would, one redirect at a time (so a test can
//! stop or tamper at any step). The provider needs `APOGEE_TEST_OIDC_PROVIDER` (set by
//! `scripts/services`); without it the test fails, unless the services are skipped on purpose.

use std::collections::{BTreeMap, HashMap};
use std::process::Stdio;

use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::WAIT;

/// A free loopback port (for a server whose redirect URL must be known before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("pick a port")
        .port()
}

/// One client registered at the provider.
pub struct ClientReg<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    pub redirect_uri: &'a str,
}

/// The provider process; killed when dropped.
pub struct TestProvider {
    pub issuer: String,
    _child: Child,
}

impl TestProvider {
    /// `None` only when the services are skipped on purpose.
    pub async fn start(host: &str, clients: &[ClientReg<'_>]) -> Option<TestProvider> {
        let script =
            apogee_store::test_support::service_env(apogee_store::test_support::OIDC_PROVIDER_VAR)?;
        let mut cmd = Command::new("node");
        cmd.arg(&script).args(["--host", host]);
        for c in clients {
            cmd.args([
                "--client",
                &format!("{}:{}:{}", c.id, c.secret, c.redirect_uri),
            ]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node (is Node installed? scripts/services installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("provider printed nothing in time")
            .expect("read stdout")
            .expect("provider exited before serving");
        let issuer = line
            .strip_prefix("issuer ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        // The provider logs notes to stdout now and then: keep reading, or it dies of EPIPE.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Some(TestProvider {
            issuer,
            _child: child,
        })
    }

    async fn control(&self, path: &str, body: &Value) -> Value {
        let resp = reqwest::Client::new()
            .post(format!("{}/__test/{path}", self.issuer))
            .json(body)
            .send()
            .await
            .expect("provider test switch");
        assert!(resp.status().is_success(), "{path}: {}", resp.status());
        resp.json().await.expect("JSON")
    }

    /// Rotates the provider's signing key; returns the new `kid`.
    pub async fn rotate_keys(&self) -> String {
        let v = self.control("rotate", &Value::Null).await;
        v["kid"].as_str().expect("kid").to_string()
    }

    /// Changes the next ID token: `{"claims": {...}, "unpublished_key": bool}`.
    pub async fn next_id_token(&self, change: Value) {
        self.control("next-id-token", &change).await;
    }
}

/// A response as a browser sees it.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    /// The raw `Set-Cookie` headers.
    pub set_cookies: Vec<String>,
    pub body: String,
}

/// A cookie jar per host (ports share cookies, as in browsers) and no automatic redirects.
pub struct Browser {
    http: reqwest::Client,
    jar: HashMap<String, BTreeMap<String, String>>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(WAIT)
                .build()
                .expect("client"),
            jar: HashMap::new(),
        }
    }

    fn host(url: &str) -> String {
        reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_default()
    }

    /// The `Cookie` header this browser sends to `url`'s host.
    pub fn cookie_header(&self, url: &str) -> String {
        self.jar
            .get(&Self::host(url))
            .map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    pub fn cookie(&self, url: &str, name: &str) -> Option<String> {
        self.jar.get(&Self::host(url))?.get(name).cloned()
    }

    fn keep(&mut self, url: &str, set_cookies: &[String]) {
        let jar = self.jar.entry(Self::host(url)).or_default();
        for c in set_cookies {
            let first = c.split(';').next().unwrap_or_default();
            let Some((name, value)) = first.split_once('=') else {
                continue;
            };
            let expired = c
                .split(';')
                .any(|a| a.trim().eq_ignore_ascii_case("max-age=0"))
                || value.is_empty();
            if expired {
                jar.remove(name.trim());
            } else {
                jar.insert(name.trim().to_string(), value.trim().to_string());
            }
        }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Page {
        let cookies = self.cookie_header(url);
        let req = if cookies.is_empty() {
            req
        } else {
            req.header(COOKIE, cookies)
        };
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| {
                reqwest::Url::parse(url)
                    .and_then(|base| base.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_string())
            });
        let set_cookies: Vec<String> = resp
            .headers()
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        self.keep(url, &set_cookies);
        let body = resp.text().await.unwrap_or_default();
        Page {
            status,
            location,
            set_cookies,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Page {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    pub async fn post_form(&mut self, url: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(url).form(form);
        self.send(req, url).await
    }

    /// `GET /auth/login` at `server` (`http://ADDR`): the provider's authorization URL.
    pub async fn start_sign_in(&mut self, server: &str) -> String {
        let page = self.get(&format!("{server}/auth/login")).await;
        assert_eq!(page.status, 303, "{page:?}");
        let to = page.location.expect("a redirect to the provider");
        assert!(!to.starts_with(server), "login went back to the app: {to}");
        to
    }

    /// Goes through the provider from `authorize_url`, logging in as `login` on its login page
    /// when it shows one, until the provider redirects back to `server`: that callback URL
    /// (not followed).
    pub async fn at_provider(&mut self, authorize_url: &str, server: &str, login: &str) -> String {
        let mut url = authorize_url.to_string();
        for _ in 0..20 {
            if url.starts_with(server) {
                return url;
            }
            let page = self.get(&url).await;
            if let Some(next) = page.location {
                url = next;
                continue;
            }
            assert_eq!(page.status, 200, "provider page {url}: {page:?}");
            // The development login page: one form, posting `login` and `password`.
            let action = page
                .body
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no form on {url}: {}", page.body));
            let action = reqwest::Url::parse(&url)
                .and_then(|u| u.join(action))
                .expect("form action")
                .to_string();
            let posted = self
                .post_form(
                    &action,
                    &[("prompt", "login"), ("login", login), ("password", "any")],
                )
                .await;
            url = match posted.location {
                Some(next) => next,
                None => panic!("login form answered {posted:?}"),
            };
        }
        panic!("the provider did not send the browser back to {server}");
    }

    /// A whole sign-in at `server` as `login`: the callback's answer (a redirect to the UI).
    pub async fn sign_in(&mut self, server: &str, login: &str) -> Page {
        let authorize = self.start_sign_in(server).await;
        let callback = self.at_provider(&authorize, server, login).await;
        self.get(&callback).await
    }
}

/// The error code a sign-in ended with (`/#signin_error=CODE`), or `None` when it succeeded.
pub fn sign_in_error(page: &Page) -> Option<String> {
    assert_eq!(page.status, 303, "{page:?}");
    let to = page.location.as_deref().expect("a redirect to the UI");
    to.split("#signin_error=").nth(1).map(str::to_string)
}
