//! `GET /auth/oidc/login` and `GET /auth/oidc/callback`: sign-in through the identity
//! provider. Every failure ends on a page that says what went wrong, never a bare error.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use openidconnect::url::form_urlencoded;
use serde::Deserialize;

use super::{Client, origin};
use crate::app::Served;
use crate::auth::accounts::SignedIn;
use crate::auth::oidc::{self, Callback, Failure, LOGIN_TTL};
use crate::auth::session;
use crate::config::Config;
use crate::graphql::account::User;

#[derive(Deserialize)]
pub struct LoginParams {
    /// An invite code, for a server whose registration is by invite.
    invite: Option<String>,
}

/// `Set-Cookie` value for a sign-in in progress (empty and expired: removed).
fn sign_in_cookie(served: &Served, name: &str, sealed: &str, max_age: Duration) -> String {
    session::cookie_header(name, sealed, "/auth/oidc", max_age.as_secs(), served.app.config.secure_cookies())
}

pub async fn login(State(served): State<Served>, Query(params): Query<LoginParams>) -> Response {
    let Some(oidc) = &served.app.oidc else {
        return not_configured();
    };
    match oidc.begin(&served.app.secrets, params.invite.clone()).await {
        Ok(begun) => {
            let cookie = sign_in_cookie(&served, &begun.cookie_name, &begun.sealed, LOGIN_TTL);
            ([(header::SET_COOKIE, cookie)], Redirect::to(&begun.url)).into_response()
        }
        Err(failure) => failure_page(&failure, params.invite.as_deref()),
    }
}

pub async fn callback(
    State(served): State<Served>,
    client: Client,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    // Parsed here rather than by an extractor, so that a mangled query still gets a page.
    let mut callback = Callback::default();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        let field = match key.as_ref() {
            "code" => &mut callback.code,
            "state" => &mut callback.state,
            "error" => &mut callback.error,
            "error_description" => &mut callback.error_description,
            _ => continue,
        };
        field.get_or_insert_with(|| value.into_owned());
    }
    let Some(oidc) = &served.app.oidc else {
        return not_configured();
    };
    let app = &served.app;
    let cookies = headers.get(header::COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let started = oidc::started(&app.secrets, cookies, callback.state.as_deref());
    let invite = started.as_ref().ok().and_then(|started| started.invite.clone());
    // The sign-in in progress is over either way.
    let clear = callback
        .state
        .as_deref()
        .and_then(oidc::cookie_name)
        .map(|name| sign_in_cookie(&served, &name, "", Duration::ZERO));
    let signed_in = async {
        let account = oidc.finish(started?, callback).await?;
        oidc::sign_in(app, oidc, account, origin(&headers, client, &app.config)).await
    };
    let mut response = match signed_in.await {
        Err(failure) => failure_page(&failure, invite.as_deref()),
        Ok(signed_in) => signed_in_response(&app.config, &headers, signed_in),
    };
    if let Some(clear) = clear.and_then(|clear| clear.parse().ok()) {
        response.headers_mut().append(header::SET_COOKIE, clear);
    }
    response
}

/// The session cookie, and a redirect to the web page, or the token for an API client
/// that drove the flow itself.
fn signed_in_response(config: &Config, headers: &HeaderMap, signed_in: SignedIn) -> Response {
    let session = session::set_cookie(&signed_in.token, config.session_ttl.as_secs(), config.secure_cookies());
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/json"));
    let body = if wants_json {
        let user = User::from(signed_in.user);
        let user = serde_json::json!({ "id": user.id.to_string(), "email": user.email, "name": user.name });
        Json(serde_json::json!({ "token": signed_in.token, "user": user })).into_response()
    } else {
        Redirect::to(&format!("{}/", config.public_url.trim_end_matches('/'))).into_response()
    };
    ([(header::SET_COOKIE, session)], body).into_response()
}

fn not_configured() -> Response {
    page(StatusCode::NOT_FOUND, "Single sign-on is not configured on this server.", None)
}

/// The page for `failure`; starting again keeps the sign-in's invite.
fn failure_page(failure: &Failure, invite: Option<&str>) -> Response {
    let status = match failure {
        Failure::Unavailable => StatusCode::BAD_GATEWAY,
        Failure::Account(error) if failure.is_internal() => {
            tracing::error!(%error, "single sign-on failed");
            StatusCode::SERVICE_UNAVAILABLE
        }
        Failure::Account(crate::error::AppError::Forbidden(_)) => StatusCode::FORBIDDEN,
        Failure::EmailInUse(_) => StatusCode::CONFLICT,
        _ => StatusCode::BAD_REQUEST,
    };
    let message = if failure.is_internal() {
        "Sign-in failed on the server. Please try again.".into()
    } else {
        failure.to_string()
    };
    page(status, &message, invite)
}

fn page(status: StatusCode, message: &str, invite: Option<&str>) -> Response {
    let message = escape(message);
    let again = match invite {
        Some(invite) => format!(
            "/auth/oidc/login?invite={}",
            form_urlencoded::byte_serialize(invite.as_bytes()).collect::<String>()
        ),
        None => "/auth/oidc/login".to_owned(),
    };
    let again = escape(&again);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign-in failed · Liteskill</title></head>\
         <body><h1>Sign-in failed</h1><p id=\"reason\">{message}</p><p><a href=\"{again}\">Start again</a></p></body></html>"
    );
    (status, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}
