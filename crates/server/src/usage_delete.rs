//! `apogee delete-usage`: removes an org's usage records by request id, id prefix or time
//! range, with their share of the hourly rollups, in one transaction — the operator's way out
//! of records no API can take back (a test import, a client that sent garbage).

use apogee_store::{Store, UsageSelection};

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("{0}")]
    Selection(String),
    #[error(transparent)]
    Store(#[from] apogee_store::StoreError),
}

/// What the command line asked to delete.
#[derive(Debug, Default)]
pub struct Request {
    pub ids: Vec<String>,
    pub prefix: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Request {
    /// The one selection the request makes: ids, a prefix, or a range with both ends.
    pub fn selection(self) -> Result<UsageSelection, DeleteError> {
        let bad = |m: &str| Err(DeleteError::Selection(m.to_string()));
        let range = self.from.is_some() || self.to.is_some();
        match (!self.ids.is_empty(), self.prefix, range) {
            (true, None, false) => Ok(UsageSelection::Ids(self.ids)),
            (false, Some(p), false) if p.is_empty() => {
                bad("--prefix must not be empty; delete by --from/--to to remove everything")
            }
            (false, Some(p), false) => Ok(UsageSelection::Prefix(p)),
            (false, None, true) => {
                let (Some(from), Some(to)) = (self.from, self.to) else {
                    return bad("a time range needs both --from and --to");
                };
                let bound = |t: &str, is_end| {
                    crate::rest::parse_bound(t, is_end)
                        .map_err(|e| DeleteError::Selection(e.to_string()))
                };
                let (from, to) = (bound(&from, false)?, bound(&to, true)?);
                if from >= to {
                    return bad("--from must be before --to");
                }
                Ok(UsageSelection::Between {
                    from_ms: from.timestamp_millis(),
                    to_ms: to.timestamp_millis(),
                })
            }
            (false, None, false) => bad("say what to delete: --id, --prefix, or --from and --to"),
            _ => bad("use one of --id, --prefix, or --from/--to at a time"),
        }
    }
}

/// Deletes what `request` selects from `org`'s usage; returns how many records went.
pub async fn run(config: &Config, org: &str, request: Request) -> Result<u64, DeleteError> {
    let selection = request.selection()?;
    let store = Store::open(&config.database_url).await?;
    let deleted = store.delete_usage(org, &selection).await;
    store.close().await;
    let deleted = deleted?;
    tracing::info!(org, deleted, ?selection, "usage records deleted");
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(r: Request) -> Result<UsageSelection, String> {
        r.selection().map_err(|e| e.to_string())
    }

    #[test]
    fn exactly_one_kind_of_selection() {
        assert_eq!(
            sel(Request {
                ids: vec!["a".into(), "b".into()],
                ..Request::default()
            }),
            Ok(UsageSelection::Ids(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            sel(Request {
                prefix: Some("load-".into()),
                ..Request::default()
            }),
            Ok(UsageSelection::Prefix("load-".into()))
        );
        // A bare date as the end includes that day.
        assert_eq!(
            sel(Request {
                from: Some("2026-11-01".into()),
                to: Some("2026-11-01".into()),
                ..Request::default()
            }),
            Ok(UsageSelection::Between {
                from_ms: 1_793_491_200_000,
                to_ms: 1_793_577_600_000
            })
        );
        for bad in [
            Request::default(),
            Request {
                prefix: Some(String::new()),
                ..Request::default()
            },
            Request {
                from: Some("2026-11-01".into()),
                ..Request::default()
            },
            Request {
                ids: vec!["a".into()],
                prefix: Some("p".into()),
                ..Request::default()
            },
            Request {
                from: Some("2026-11-02".into()),
                to: Some("2026-11-01T00:00:00Z".into()),
                ..Request::default()
            },
        ] {
            assert!(sel(bad).is_err());
        }
    }
}
