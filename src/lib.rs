//! Liteskill: a self-hosted AI chat server whose whole surface is a GraphQL API.

pub mod app;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod graphql;
pub mod http;
pub mod storage;
pub mod telemetry;
