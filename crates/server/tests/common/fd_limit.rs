//! A server process started under a lowered open-file limit (`RLIMIT_NOFILE`, soft and hard,
//! so it cannot raise it back), for the tests of what happens when descriptors are scarce.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use super::{Server, TEST_LOG, WAIT, binary};

impl Server {
    /// Like [`Server::start`], with at most `open_files` descriptors for the process.
    pub async fn start_with_open_files(
        dir: &Path,
        env: &[(&str, &str)],
        open_files: u64,
    ) -> Server {
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .env("APOGEE_ADDR", "127.0.0.1:0")
            .env("APOGEE_DATA_DIR", dir)
            .env("RUST_LOG", TEST_LOG)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // SAFETY: runs in the forked child before exec; setrlimit is async-signal-safe and
        // nothing here allocates or takes a lock.
        unsafe {
            cmd.pre_exec(move || {
                rlimit::setrlimit(rlimit::Resource::NOFILE, open_files, open_files)
            });
        }
        let mut child = cmd.spawn().expect("spawn apogee serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server printed nothing in time")
            .expect("read stdout")
            .expect("server exited before listening");
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server {
            addr,
            dir: dir.to_path_buf(),
            child,
        }
    }
}
