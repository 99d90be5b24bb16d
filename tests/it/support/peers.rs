//! Real third-party servers from the npm registry (`tests/peers`), installed from the
//! lockfile the first time a test needs them, so `cargo test` stays the one command.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

static INSTALL: Mutex<()> = Mutex::new(());

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// The path of an installed peer's executable.
pub fn executable(name: &str) -> PathBuf {
    let _installing = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = peers_dir().join("node_modules/.bin").join(name);
    if !path.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(peers_dir())
            .status()
            .expect("npm (Node.js) is needed to install the test peers");
        assert!(status.success(), "npm ci in tests/peers failed");
    }
    path
}

/// The reference MCP server ("everything") over streamable HTTP, stopped on drop.
pub struct EverythingServer {
    pub url: String,
    child: Child,
}

impl EverythingServer {
    pub async fn start() -> EverythingServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port();
        let mut child = Command::new(executable("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the everything server");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return EverythingServer { url: format!("http://127.0.0.1:{port}/mcp"), child };
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the everything server did not start");
    }
}

impl Drop for EverythingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
