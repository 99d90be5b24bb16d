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

/// Installs the peers unless `installed` (a path under `tests/peers`) exists already.
fn install(installed: &str) -> PathBuf {
    let _installing = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let path = peers_dir().join(installed);
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

/// The path of an installed peer's executable.
pub fn executable(name: &str) -> PathBuf {
    install(&format!("node_modules/.bin/{name}"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("port").port()
}

/// Waits until something listens on `port`.
async fn listening(port: u16, child: &mut Child, what: &str) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{what} did not start");
}

/// A real OpenID Connect provider (`oidc-provider` from npm, `tests/peers/oidc-provider.mjs`)
/// with one client, stopped on drop.
pub struct OidcProvider {
    pub issuer: String,
    child: Child,
}

impl OidcProvider {
    pub const CLIENT_ID: &str = "liteskill";
    pub const CLIENT_SECRET: &str = "liteskill-test-secret";

    pub async fn start(redirect_uri: &str) -> OidcProvider {
        install("node_modules/oidc-provider/package.json");
        let port = free_port();
        let mut child = Command::new("node")
            .arg(peers_dir().join("oidc-provider.mjs"))
            .env("PORT", port.to_string())
            .env("CLIENT_ID", Self::CLIENT_ID)
            .env("CLIENT_SECRET", Self::CLIENT_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the OpenID provider (Node.js)");
        listening(port, &mut child, "the OpenID provider").await;
        OidcProvider { issuer: format!("http://127.0.0.1:{port}"), child }
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The reference MCP server ("everything") over streamable HTTP, stopped on drop.
pub struct EverythingServer {
    pub url: String,
    child: Child,
}

impl EverythingServer {
    pub async fn start() -> EverythingServer {
        let port = free_port();
        let mut child = Command::new(executable("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the everything server");
        listening(port, &mut child, "the everything server").await;
        EverythingServer { url: format!("http://127.0.0.1:{port}/mcp"), child }
    }
}

impl Drop for EverythingServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
