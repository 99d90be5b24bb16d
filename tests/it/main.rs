//! The one integration-test binary: a real server over real databases.
#![expect(clippy::expect_used, reason = "test support fails the test at the first surprise")]

mod support;

mod access_matrix;
mod accounts;
mod authorization;
mod cli;
mod collaboration;
mod conversations;
mod event_store;
mod http;
mod identity;
mod input;
mod mcp;
mod models;
mod oidc;
mod rebuild;
mod schema;
mod streaming;
mod tools;
mod websocket;
