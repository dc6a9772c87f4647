//! A server process started under a lowered open-file limit (`RLIMIT_NOFILE`, soft and hard,
//! so it cannot raise it back), for the tests of what happens when descriptors are scarce.

use std::path::Path;
use std::process::Stdio;

use super::{Server, apogee};

impl Server {
    /// Like [`Server::start`], with at most `open_files` descriptors for the process.
    pub async fn start_with_open_files(
        dir: &Path,
        env: &[(&str, &str)],
        open_files: u64,
    ) -> Server {
        // The same clean environment as every test server.
        let mut cmd = apogee();
        cmd.arg("serve")
            .env("APOGEE_ADDR", "127.0.0.1:0")
            .env("APOGEE_DATA_DIR", dir)
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
        Server::spawn(cmd, dir).await
    }
}
