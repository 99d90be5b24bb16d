//! Liteskill: a self-hosted AI chat server whose whole surface is a GraphQL API.

pub mod app;
pub mod auth;
pub mod bench;
pub mod bus;
pub mod chat;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod limits;
pub mod llm;
pub mod mcp;
pub mod relay;
pub mod storage;
pub mod telemetry;
