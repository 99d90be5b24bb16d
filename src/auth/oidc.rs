//! Sign-in with an OpenID Connect provider: the authorization code flow with PKCE, state
//! and nonce.
//!
//! What a sign-in must remember between the redirect to the provider and its return
//! (state, nonce, PKCE verifier, invite) travels in a short-lived cookie sealed with the
//! server's key, so any server instance can finish what another started. Provider
//! accounts are keyed by issuer and subject; an existing account with the same email is
//! linked only when the provider says the email is verified and configuration allows it.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::accounts::{self, Admission, Method, NewAccount, Origin, SignedIn};
use super::session;
use crate::app::App;
use crate::config::OidcSettings;
use crate::crypto::{Binding, SecretBox};
use crate::domain::group;
use crate::domain::ids::UserId;
use crate::domain::user::{self, Identity, User};
use crate::domain::values::{DisplayName, Email};
use crate::domain::{self, Actor};
use crate::error::AppError;
use crate::storage::event_store::execute;
use crate::storage::projections::{groups, identities, users};
use crate::storage::{StoreError, sessions};

/// The cookies that carry sign-ins in progress are named this followed by their state,
/// so that sign-ins started in two tabs both finish.
const COOKIE_PREFIX: &str = "liteskill_oidc_";
/// How long a sign-in may take at the provider.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Provider metadata and keys are fetched again after this long, so rotated keys are
/// picked up.
const METADATA_TTL: Duration = Duration::from_secs(600);
const SEALED_AS: Binding<'static> = Binding { row: "oidc", purpose: "sign-in in progress" };

/// Why a sign-in did not complete, in words for the person signing in.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error("The identity provider did not sign you in: {0}")]
    Denied(String),
    #[error("This sign-in has expired, or was started in another browser. Please start again.")]
    NoSignInStarted,
    #[error("The answer from the identity provider does not belong to the sign-in started here. Please start again.")]
    WrongState,
    #[error(
        "The identity provider did not accept the sign-in code: it has expired or was already used. Please start again."
    )]
    CodeRejected,
    #[error("The identity provider's token could not be verified ({0}). Please start again.")]
    InvalidToken(String),
    #[error("The identity provider cannot be reached right now. Please try again later.")]
    Unavailable,
    #[error("The identity provider did not share a valid email address, which Liteskill needs.")]
    NoEmail,
    #[error("The identity provider has not verified your email address, so no account can be created with it.")]
    EmailUnverified,
    #[error(
        "An account with the email {0} already exists. Sign in with its password: the identity provider has not verified \
         this email, or this server does not link accounts by email."
    )]
    EmailInUse(String),
    #[error("{0}")]
    Account(AppError),
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        Failure::Account(error)
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Self {
        Failure::Account(error.into())
    }
}

impl Failure {
    /// Whether the server is at fault rather than the sign-in.
    pub fn is_internal(&self) -> bool {
        matches!(self, Failure::Account(AppError::Internal(_)))
    }
}

/// What the provider's callback carries.
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// A sign-in in progress, sealed into its cookie (see [`cookie_name`]).
#[derive(Serialize, Deserialize)]
pub struct Started {
    state: String,
    nonce: String,
    verifier: String,
    pub invite: Option<String>,
    /// Unix seconds.
    expires_at: i64,
}

/// A sign-in begun: where to send the browser, and the cookie to set.
pub struct Begun {
    pub url: String,
    pub cookie_name: String,
    pub sealed: String,
}

/// The name of the cookie of the sign-in with `state`; none for a state this server
/// could not have made, which is then never echoed into a header.
pub fn cookie_name(state: &str) -> Option<String> {
    let ours =
        (1..=64).contains(&state.len()) && state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ours.then(|| format!("{COOKIE_PREFIX}{state}"))
}

/// The sign-in this browser started that the provider's answer with `state` belongs to.
pub fn started(secrets: &SecretBox, cookie_header: &str, state: Option<&str>) -> Result<Started, Failure> {
    let cookie = state.and_then(cookie_name).and_then(|name| session::cookie(cookie_header, &name));
    let Some(sealed) = cookie else {
        let another = cookie_header.split(';').any(|pair| pair.trim_start().starts_with(COOKIE_PREFIX));
        return Err(if another { Failure::WrongState } else { Failure::NoSignInStarted });
    };
    let started: Started = secrets
        .open(SEALED_AS, sealed)
        .ok()
        .and_then(|json| serde_json::from_str(json.expose_secret()).ok())
        .filter(|started: &Started| started.expires_at > domain::now().timestamp())
        .ok_or(Failure::NoSignInStarted)?;
    // The name says which sign-in the cookie claims to be; the sealed state proves it.
    match constant_time_eq(state.unwrap_or_default().as_bytes(), started.state.as_bytes()) {
        true => Ok(started),
        false => Err(Failure::WrongState),
    }
}

/// The provider account a finished sign-in verified.
#[derive(Debug)]
pub struct ProviderAccount {
    pub identity: Identity,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub invite: Option<String>,
    /// The provider groups the token lists, when `OIDC_GROUPS_CLAIM` names a claim it has.
    pub groups: Option<Vec<String>>,
}

pub struct Oidc {
    settings: OidcSettings,
    issuer: IssuerUrl,
    redirect: RedirectUrl,
    http: Http,
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
}

type Client = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// The provider's HTTP requests, over the server's own HTTP client. Redirects are not
/// followed: a provider endpoint that redirects could point the server anywhere.
struct Http(reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = BoxFuture<'c, Result<openidconnect::HttpResponse, reqwest::Error>>;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        send(&self.0, request).boxed()
    }
}

async fn send(
    http: &reqwest::Client,
    request: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, reqwest::Error> {
    let (parts, body) = request.into_parts();
    let response = http.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body).send().await?;
    let mut builder = openidconnect::http::Response::builder().status(response.status());
    if let Some(headers) = builder.headers_mut() {
        headers.extend(response.headers().clone());
    }
    let body = response.bytes().await?.to_vec();
    // The builder only fails on invalid parts, and these came from a parsed response.
    Ok(builder.body(body).unwrap_or_default())
}

impl Oidc {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Oidc> {
        let issuer = IssuerUrl::new(settings.issuer.clone())?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Oidc { settings, issuer, redirect, http: Http(http), metadata: tokio::sync::Mutex::new(None) })
    }

    pub fn display_name(&self) -> &str {
        &self.settings.display_name
    }

    async fn client(&self, refresh: bool) -> Result<Client, Failure> {
        let mut cached = self.metadata.lock().await;
        let fresh = cached.as_ref().filter(|(at, _)| !refresh && at.elapsed() < METADATA_TTL).map(|(_, m)| m.clone());
        let metadata = match fresh {
            Some(metadata) => metadata,
            None => {
                let metadata =
                    CoreProviderMetadata::discover_async(self.issuer.clone(), &self.http).await.map_err(|error| {
                        tracing::warn!(%error, "OpenID Connect discovery failed");
                        Failure::Unavailable
                    })?;
                *cached = Some((Instant::now(), metadata.clone()));
                metadata
            }
        };
        let secret = self.settings.client_secret.as_ref().map(|s| ClientSecret::new(s.expose_secret().to_owned()));
        Ok(CoreClient::from_provider_metadata(metadata, ClientId::new(self.settings.client_id.clone()), secret)
            .set_redirect_uri(self.redirect.clone()))
    }

    pub async fn begin(&self, secrets: &SecretBox, invite: Option<String>) -> Result<Begun, Failure> {
        let client = self.client(false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let started = Started {
            state: state.secret().clone(),
            nonce: nonce.secret().clone(),
            verifier: verifier.secret().clone(),
            invite,
            expires_at: domain::now().timestamp() + LOGIN_TTL.as_secs() as i64,
        };
        let sealed = secrets.seal(SEALED_AS, &serde_json::to_string(&started).map_err(AppError::internal)?);
        let cookie_name = cookie_name(&started.state)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("a state of an unexpected form")))?;
        Ok(Begun { url: url.to_string(), cookie_name, sealed })
    }

    /// Finishes a sign-in from the provider's answer (which [`started`] matched to this
    /// browser's sign-in): redeems the code and verifies the ID token (signature against
    /// the provider's keys, issuer, audience, expiry and nonce).
    pub async fn finish(&self, started: Started, callback: Callback) -> Result<ProviderAccount, Failure> {
        // The state matched, so the answer is the provider's, to this sign-in.
        if let Some(error) = callback.error {
            return Err(Failure::Denied(callback.error_description.unwrap_or(error)));
        }
        let code = callback.code.ok_or(Failure::CodeRejected)?;
        let client = self.client(false).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|_| Failure::Unavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(started.verifier))
            .request_async(&self.http)
            .await
            .map_err(|error| match error {
                openidconnect::RequestTokenError::ServerResponse(_) => Failure::CodeRejected,
                other => {
                    tracing::warn!(error = %other, "OpenID Connect token request failed");
                    Failure::Unavailable
                }
            })?;
        let id_token = tokens.id_token().ok_or_else(|| Failure::InvalidToken("no ID token".into()))?;
        let nonce = Nonce::new(started.nonce);
        let claims = match id_token.claims(&client.id_token_verifier(), &nonce) {
            Ok(claims) => claims.clone(),
            // The provider may have rotated its keys since they were fetched.
            Err(openidconnect::ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(true).await?;
                id_token
                    .claims(&client.id_token_verifier(), &nonce)
                    .map_err(|error| Failure::InvalidToken(error.to_string()))?
                    .clone()
            }
            Err(error) => return Err(Failure::InvalidToken(error.to_string())),
        };
        Ok(ProviderAccount {
            identity: Identity { issuer: claims.issuer().to_string(), subject: claims.subject().to_string() },
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            name: claims.name().and_then(|name| name.get(None)).map(|name| name.to_string()),
            invite: started.invite,
            groups: self.settings.groups_claim.as_deref().and_then(|claim| listed(&id_token.to_string(), claim)),
        })
    }

    pub fn links_verified_email(&self) -> bool {
        self.settings.link_verified_email
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The strings a verified ID token's top-level `claim` holds (a list of strings, or one
/// string); none if the token lacks it or it has another shape, which must not read as
/// "in no group". The library only types the standard claims.
fn listed(id_token: &str, claim: &str) -> Option<Vec<String>> {
    let payload = URL_SAFE_NO_PAD.decode(id_token.split('.').nth(1)?).ok()?;
    let listed = match serde_json::from_slice::<serde_json::Value>(&payload).ok()?.get(claim)? {
        serde_json::Value::Array(items) => items.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        serde_json::Value::String(one) => Some(vec![one.clone()]),
        _ => None,
    };
    if listed.is_none() {
        tracing::warn!(claim, "the groups claim is not a list of strings; group memberships left as they are");
    }
    listed
}

/// Signs the provider account in (see [`account_of`]); then, when the token lists the
/// user's provider groups, makes their membership of linked groups follow it.
pub async fn sign_in(
    app: &App,
    oidc: &Oidc,
    mut account: ProviderAccount,
    origin: Origin,
) -> Result<SignedIn, Failure> {
    let groups = account.groups.take();
    let signed_in = account_of(app, oidc, account, origin).await?;
    if let Some(groups) = groups
        && let Err(error) = follow_provider_groups(app, signed_in.user.user_id(), &groups).await
    {
        // The sign-in stands; the next one tries again.
        tracing::warn!(%error, "could not update provider group memberships");
    }
    Ok(signed_in)
}

/// Adds `user` to each group linked to a provider group in `listed`, and removes them
/// from each linked group not in it. Each change is its own command on its group; one
/// that fails (say, a concurrent sign-in made it already) does not stop the others, and
/// removals go first, since access the provider withdrew matters most.
async fn follow_provider_groups(app: &App, user: UserId, listed: &[String]) -> Result<(), AppError> {
    let mut conn = app.db.conn().await?;
    let linked = groups::linked(&mut conn).await?;
    let member_of = groups::member_of(&mut conn, user).await?;
    drop(conn);
    let mut changes: Vec<_> = linked
        .into_iter()
        .filter_map(|(group, provider_group)| match (listed.contains(&provider_group), member_of.contains(&group)) {
            (true, false) => Some((group, group::Command::AddMember { user_id: user })),
            (false, true) => Some((group, group::Command::RemoveMember { user_id: user })),
            _ => None,
        })
        .collect();
    changes.sort_by_key(|(_, command)| matches!(command, group::Command::AddMember { .. }));
    for (group, command) in changes {
        if let Err(error) = crate::chat::run_on_group(app, Actor::System, group, command).await {
            tracing::warn!(%error, %group, %user, "could not follow a provider group");
        }
    }
    Ok(())
}

/// Signs the provider account in: to the account it was linked to, else to the account
/// with its email when linking is allowed, else to a new account under the registration
/// policy.
async fn account_of(app: &App, oidc: &Oidc, account: ProviderAccount, origin: Origin) -> Result<SignedIn, Failure> {
    let ProviderAccount { identity, email, email_verified, name, invite, groups: _ } = account;
    let mut conn = app.db.conn().await?;
    let linked = identities::user_of(&mut conn, &identity.issuer, &identity.subject).await?;
    let linked = match linked {
        Some(user) => users::find(&mut conn, user).await?,
        None => None,
    };
    if let Some(user) = linked {
        // The provider's account is the source of the profile: keep up with it.
        let name = name.as_deref().and_then(|name| DisplayName::parse(name).ok()).filter(|n| n.as_str() != user.name);
        let email = email.as_deref().filter(|_| email_verified).and_then(|email| Email::parse(email).ok());
        let email = match email.filter(|email| email.as_str() != user.email) {
            Some(email) if users::find_by_email(&mut conn, email.as_str()).await?.is_none() => Some(email),
            _ => None,
        };
        drop(conn);
        let changes = match (name, email) {
            (None, None) => vec![],
            (name, email) => vec![user::Command::UpdateProfile { name, email }],
        };
        return open_session(app, user, changes, origin).await;
    }
    let email = email.as_deref().and_then(|email| Email::parse(email).ok()).ok_or(Failure::NoEmail)?;
    let existing = users::find_by_email(&mut conn, email.as_str()).await?;
    drop(conn);
    if let Some(user) = existing {
        if !(email_verified && oidc.links_verified_email()) {
            return Err(Failure::EmailInUse(email.as_str().to_owned()));
        }
        return open_session(app, user, vec![user::Command::LinkIdentity { identity }], origin).await;
    }
    // An account takes its email from the provider only when the provider vouches for
    // it: otherwise anyone could claim someone else's address.
    if !email_verified {
        return Err(Failure::EmailUnverified);
    }
    let name = match name.and_then(|name| DisplayName::parse(&name).ok()) {
        Some(name) => name,
        None => DisplayName::parse(email.as_str().split('@').next().unwrap_or("user")).map_err(AppError::from)?,
    };
    let id = UserId::new();
    let (token, session) = accounts::new_session(&app.config, id, Method::Oidc, origin)?;
    let account = NewAccount {
        id,
        actor: Actor::User(id),
        email,
        name,
        password_hash: None,
        role: None,
        identity: Some(identity),
        admission: Some(Admission { default: app.config.registration, invite }),
        session: Some(session),
    };
    let user = accounts::insert_account(&app.db, account).await?;
    Ok(SignedIn { token, user })
}

/// A session for an existing account, after `commands` on it. Linking an identity ends
/// the account's other sessions: whoever held them before the verified owner arrived
/// keeps nothing.
async fn open_session(
    app: &App,
    user: users::UserRow,
    commands: Vec<user::Command>,
    origin: Origin,
) -> Result<SignedIn, Failure> {
    if user.disabled {
        return Err(AppError::Forbidden("this account is disabled").into());
    }
    let id = user.user_id();
    let (token, session) = accounts::new_session(&app.config, id, Method::Oidc, origin)?;
    let (user, ended) = app
        .db
        .write(|conn| {
            async move {
                let mut ended = vec![];
                for command in commands {
                    let links = matches!(command, user::Command::LinkIdentity { .. });
                    execute::<User>(conn, id.uuid(), Actor::User(id), command).await?;
                    if links {
                        ended = sessions::delete_for_user(conn, id, None).await?;
                    }
                }
                sessions::insert(conn, &session).await?;
                let user = users::find(conn, id).await?.ok_or(AppError::NotFound("user"))?;
                Ok::<_, AppError>((user, ended))
            }
            .boxed()
        })
        .await?;
    app.end_sessions(ended);
    Ok(SignedIn { token, user })
}
