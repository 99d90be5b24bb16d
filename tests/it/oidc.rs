//! Sign-in through a real OpenID Connect provider (`oidc-provider` from npm), driving
//! the whole redirect flow with an HTTP client: our login, the provider's authorization
//! endpoint and login form, and our callback.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::peers::OidcProvider;
use crate::support::{TestApp, error_code, on_both_backends};

/// What the users signing in see as the server's address. The provider sends the browser
/// back there; the test delivers the callback to the real server.
const PUBLIC_URL: &str = "http://liteskill.test";

/// An account at the provider, as its login form takes it.
struct Account<'a> {
    sub: &'a str,
    email: &'a str,
    verified: bool,
}

/// A browser: follows nothing by itself, and keeps the provider's cookies.
struct Browser<'a> {
    app: &'a TestApp,
    http: reqwest::Client,
    provider_cookies: BTreeMap<String, String>,
    /// The provider groups the accounts it signs in as are in (comma-separated), if the
    /// provider says.
    groups: Option<&'static str>,
}

/// Where a sign-in stands once the provider sends the browser back.
struct Returned {
    /// The callback's path and query, on our server.
    callback: String,
    /// Our sign-in cookie, set by `/auth/oidc/login`.
    cookie: String,
}

/// `location` as an absolute address at `origin` (`http://host:port`).
fn at(origin: &str, location: String) -> String {
    if location.starts_with("http") { location } else { format!("{origin}{location}") }
}

fn location(response: &reqwest::Response) -> String {
    assert!(response.status().is_redirection(), "expected a redirect, got {}", response.status());
    response.headers()[LOCATION].to_str().expect("location").to_owned()
}

impl<'a> Browser<'a> {
    fn new(app: &'a TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser { app, http, provider_cookies: BTreeMap::new(), groups: None }
    }

    async fn at_provider(&mut self, request: reqwest::RequestBuilder) -> reqwest::Response {
        let cookies: Vec<String> = self.provider_cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let response = request.header(COOKIE, cookies.join("; ")).send().await.expect("provider answers");
        for header in response.headers().get_all(SET_COOKIE) {
            let pair = header.to_str().expect("cookie").split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.provider_cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        response
    }

    /// Starts at our login (with `query`), lets `tamper` change the authorization request,
    /// then signs in at the provider as `account` (or denies consent).
    async fn sign_in_at_provider(
        &mut self,
        query: &str,
        account: Option<&Account<'_>>,
        tamper: impl Fn(String) -> String,
    ) -> Returned {
        // Signed out at the provider, so that it asks who signs in.
        self.provider_cookies.clear();
        let login = self.http.get(self.app.url(&format!("/auth/oidc/login{query}"))).send().await.expect("login");
        let cookie = login.headers()[SET_COOKIE].to_str().expect("cookie").split(';').next().expect("pair").to_owned();
        assert!(cookie.starts_with("liteskill_oidc_"), "{cookie}");
        let authorize = tamper(location(&login));
        let interaction = location(&self.at_provider(self.http.get(&authorize)).await);
        let provider = authorize.split("/auth?").next().expect("provider").to_owned();
        let mut form: Vec<(&str, String)> = match account {
            Some(account) => vec![
                ("sub", account.sub.to_owned()),
                ("email", account.email.to_owned()),
                ("email_verified", account.verified.to_string()),
                ("name", format!("Name of {}", account.sub)),
            ],
            None => vec![("deny", "1".to_owned())],
        };
        form.extend(self.groups.map(|groups| ("groups", groups.to_owned())));
        let interaction = at(&provider, interaction);
        let resume = at(&provider, location(&self.at_provider(self.http.post(&interaction).form(&form)).await));
        let back = location(&self.at_provider(self.http.get(&resume)).await);
        let callback = back.strip_prefix(PUBLIC_URL).expect("sent back to the public URL").to_owned();
        Returned { callback, cookie }
    }

    /// Delivers the provider's answer to our callback, as an API client asking for JSON.
    async fn callback(&self, returned: &Returned) -> (u16, String) {
        let response = self
            .http
            .get(self.app.url(&returned.callback))
            .header(COOKIE, &returned.cookie)
            .header(ACCEPT, "application/json")
            .send()
            .await
            .expect("callback");
        (response.status().as_u16(), response.text().await.expect("body"))
    }

    /// The whole flow; returns the session token.
    async fn sign_in(&mut self, account: &Account<'_>) -> String {
        let returned = self.sign_in_at_provider("", Some(account), |url| url).await;
        let (status, body) = self.callback(&returned).await;
        assert_eq!(status, 200, "{body}");
        let body: Value = serde_json::from_str(&body).expect("JSON");
        body["token"].as_str().expect("token").to_owned()
    }
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.graphql(Some(token), "{ me { id email name } }", json!({})).await
}

async fn with_provider(app: TestApp, settings: &[(&str, &str)]) -> (TestApp, OidcProvider) {
    let provider = OidcProvider::start(&format!("{PUBLIC_URL}/auth/oidc/callback")).await;
    let mut all = vec![
        ("PUBLIC_URL", PUBLIC_URL),
        ("OIDC_ISSUER", provider.issuer.as_str()),
        ("OIDC_CLIENT_ID", OidcProvider::CLIENT_ID),
        ("OIDC_CLIENT_SECRET", OidcProvider::CLIENT_SECRET),
    ];
    all.extend_from_slice(settings);
    (app.restart(&all).await, provider)
}

async fn users(app: &TestApp, admin: &str) -> Vec<String> {
    let data = app.ok(Some(admin), "{ users(first: 100) { edges { node { email } } } }", json!({})).await;
    data["users"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["email"].as_str().expect("email").to_owned())
        .collect()
}

async fn signs_in_through_the_provider(app: TestApp) {
    let (app, _provider) = with_provider(app, &[]).await;
    let options = app.ok(None, "{ signInOptions { singleSignOn { loginUrl } registration } }", json!({})).await;
    assert_eq!(options["signInOptions"]["singleSignOn"]["loginUrl"], "/auth/oidc/login");
    let mut browser = Browser::new(&app);
    let alice = Account { sub: "alice", email: "alice@example.com", verified: true };

    // Signed in: `me` works with the session, and signing in again is the same user,
    // the server's first and so its administrator.
    let first = browser.sign_in(&alice).await;
    let me_first = me(&app, &first).await;
    assert_eq!(me_first["data"]["me"]["email"], "alice@example.com", "{me_first:#}");
    let admin = first.clone();
    assert_eq!(app.ok(Some(&admin), "{ me { role } }", json!({})).await["me"]["role"], "ADMIN");
    assert_eq!(me_first["data"]["me"]["name"], "Name of alice");
    let second = browser.sign_in(&alice).await;
    assert_ne!(first, second);
    assert_eq!(me(&app, &second).await["data"]["me"]["id"], me_first["data"]["me"]["id"]);
    let sessions = app.ok(Some(&second), "{ mySessions { method current } }", json!({})).await;
    assert_eq!(sessions["mySessions"].as_array().map(Vec::len), Some(2));
    assert_eq!(sessions["mySessions"][0]["method"], "SINGLE_SIGN_ON");

    // A browser gets the session as a cookie and is sent to the web page.
    let returned = browser.sign_in_at_provider("", Some(&alice), |url| url).await;
    let response =
        browser.http.get(app.url(&returned.callback)).header(COOKIE, &returned.cookie).send().await.expect("callback");
    assert_eq!(location(&response), format!("{PUBLIC_URL}/"));
    let cookies: Vec<&str> =
        response.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().expect("cookie")).collect();
    assert!(cookies.iter().any(|c| c.starts_with("liteskill_session=") && c.contains("HttpOnly")), "{cookies:?}");
    let started = returned.cookie.split('=').next().expect("name");
    assert!(
        cookies.iter().any(|c| c.starts_with(&format!("{started}=;"))),
        "the sign-in cookie is cleared: {cookies:?}"
    );

    // The same code again: the provider refuses it, and we say so.
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 400, "{page}");
    assert!(page.contains("expired or was already used"), "{page}");

    // The provider's answer to another sign-in than the one this browser started.
    let mine = browser.sign_in_at_provider("", Some(&alice), |url| url).await;
    let other = browser.sign_in_at_provider("", Some(&alice), |url| url).await;
    let crossed = Returned { callback: other.callback.clone(), cookie: mine.cookie.clone() };
    let (status, page) = browser.callback(&crossed).await;
    assert_eq!(status, 400);
    assert!(page.contains("does not belong to the sign-in started here"), "{page}");
    let forged = Returned { callback: mine.callback.replace("state=", "state=forged"), cookie: mine.cookie.clone() };
    assert!(browser.callback(&forged).await.1.contains("does not belong"));
    let (status, page) = browser.callback(&Returned { callback: other.callback.clone(), cookie: String::new() }).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired, or was started in another browser"), "{page}");
    // Both sign-ins were started in this browser, as in two tabs: each finishes.
    let both = format!("{}; {}", mine.cookie, other.cookie);
    for returned in [other, mine] {
        let (status, body) = browser.callback(&Returned { cookie: both.clone(), ..returned }).await;
        assert_eq!(status, 200, "{body}");
    }

    // An authorization request whose nonce was changed on the way: the ID token carries
    // a nonce other than the one this sign-in expects.
    let tampered = browser.sign_in_at_provider("", Some(&alice), |url| url.replace("nonce=", "nonce=changed")).await;
    let (status, page) = browser.callback(&tampered).await;
    assert_eq!(status, 400);
    assert!(page.contains("could not be verified") && page.contains("nonce"), "{page}");

    // A code redeemed after it expired (this provider account's codes last one second).
    let slow = Account { sub: "slow-sam", email: "sam@example.com", verified: true };
    let late = browser.sign_in_at_provider("", Some(&slow), |url| url).await;
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let (status, page) = browser.callback(&late).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired or was already used"), "{page}");

    // Consent denied at the provider.
    let denied = browser.sign_in_at_provider("", None, |url| url).await;
    let (status, page) = browser.callback(&denied).await;
    assert_eq!(status, 400);
    assert!(page.contains("did not sign you in"), "{page}");

    // An address the provider has not verified makes no account.
    let unverified = Account { sub: "una", email: "una@example.com", verified: false };
    let returned = browser.sign_in_at_provider("", Some(&unverified), |url| url).await;
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 400);
    assert!(page.contains("has not verified your email address"), "{page}");

    // A verified address that a password account holds is not linked unless configured.
    app.register("dora@example.com").await;
    let dora = Account { sub: "dora", email: "dora@example.com", verified: true };
    let returned = browser.sign_in_at_provider("", Some(&dora), |url| url).await;
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 409, "{page}");

    // A mangled answer still gets a page.
    let (status, page) = browser
        .callback(&Returned { callback: "/auth/oidc/callback?code=%zz&state".into(), cookie: String::new() })
        .await;
    assert_eq!(status, 400);
    assert!(page.contains("Sign-in failed"), "{page}");

    // None of the failures created an account.
    assert_eq!(users(&app, &admin).await, ["alice@example.com", "dora@example.com"]);
}

async fn links_accounts_by_email_only_when_verified_and_allowed(app: TestApp) {
    let (app, _provider) = with_provider(app, &[("OIDC_LINK_VERIFIED_EMAIL", "true")]).await;
    let (admin, _) = app.register("admin@example.com").await;
    let (_, bob_id) = app.register("bob@example.com").await;
    let mut browser = Browser::new(&app);

    // The provider does not vouch for the address: a clear refusal, nothing linked.
    let unverified = Account { sub: "bob-at-idp", email: "bob@example.com", verified: false };
    let returned = browser.sign_in_at_provider("", Some(&unverified), |url| url).await;
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 409, "{page}");
    assert!(page.contains("An account with the email bob@example.com already exists"), "{page}");
    assert!(app.login("bob@example.com", "correct horse battery").await["errors"].is_null());

    // Verified, and linking is allowed: the same account, now also through the provider.
    // Sessions from before the link end.
    let before_link = app.login("bob@example.com", "correct horse battery").await["data"]["login"]["token"]
        .as_str()
        .expect("token")
        .to_owned();
    let verified = Account { sub: "bob-at-idp", email: "bob@example.com", verified: true };
    let token = browser.sign_in(&verified).await;
    assert_eq!(me(&app, &token).await["data"]["me"]["id"], bob_id.as_str());
    assert_eq!(error_code(&me(&app, &before_link).await), "UNAUTHENTICATED");
    // Linked for good: later sign-ins find the account by subject, whatever the email
    // says, and take up the provider's name, and its email once verified.
    let unverified_new = Account { sub: "bob-at-idp", email: "robert@example.com", verified: false };
    let token = browser.sign_in(&unverified_new).await;
    let profile = me(&app, &token).await;
    assert_eq!(profile["data"]["me"]["id"], bob_id.as_str());
    assert_eq!(profile["data"]["me"]["name"], "Name of bob-at-idp");
    assert_eq!(profile["data"]["me"]["email"], "bob@example.com");
    let renamed = Account { sub: "bob-at-idp", email: "robert@example.com", verified: true };
    let token = browser.sign_in(&renamed).await;
    assert_eq!(me(&app, &token).await["data"]["me"]["email"], "robert@example.com");
    assert!(app.login("robert@example.com", "correct horse battery").await["errors"].is_null());
    let verified = Account { sub: "bob-at-idp", email: "robert@example.com", verified: true };

    // A disabled account cannot sign in by either method.
    app.ok(Some(&admin), "mutation($id: ID!) { disableUser(userId: $id) { disabled } }", json!({ "id": bob_id })).await;
    let returned = browser.sign_in_at_provider("", Some(&verified), |url| url).await;
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 403);
    assert!(page.contains("this account is disabled"), "{page}");
    assert_eq!(error_code(&app.login("robert@example.com", "correct horse battery").await), "FORBIDDEN");
    assert_eq!(error_code(&me(&app, &token).await), "UNAUTHENTICATED", "disabling ended the session");

    // Invite-only registration applies to new provider accounts too.
    app.ok(Some(&admin), "mutation { setRegistrationPolicy(policy: INVITE_ONLY) }", json!({})).await;
    let carol = Account { sub: "carol", email: "carol@example.com", verified: true };
    let returned = browser.sign_in_at_provider("", Some(&carol), |url| url).await;
    let (status, page) = browser.callback(&returned).await;
    assert_eq!(status, 403);
    assert!(page.contains("by invite only"), "{page}");
    let invite = app
        .ok(Some(&admin), r#"mutation { createInvite(input: { email: "carol@example.com" }) { code } }"#, json!({}))
        .await;
    let code = invite["createInvite"]["code"].as_str().expect("code");
    // A sign-in that fails keeps its invite for the next try.
    let denied = browser.sign_in_at_provider(&format!("?invite={code}"), None, |url| url).await;
    let (status, page) = browser.callback(&denied).await;
    assert_eq!(status, 400);
    assert!(page.contains(&format!("href=\"/auth/oidc/login?invite={code}\"")), "{page}");
    let returned = browser.sign_in_at_provider(&format!("?invite={code}"), Some(&carol), |url| url).await;
    let (status, body) = browser.callback(&returned).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(users(&app, &admin).await, ["admin@example.com", "robert@example.com", "carol@example.com"]);

    // Identity links, invites and the policy are events: a rebuild reproduces them.
    crate::rebuild::rebuild_reproduces(&app).await;
    let token = browser.sign_in(&carol).await;
    assert_eq!(me(&app, &token).await["data"]["me"]["email"], "carol@example.com");
}

const LINK: &str = "mutation($id: ID!, $name: String) {
    linkGroupToProvider(groupId: $id, providerGroup: $name) { providerGroup } }";

async fn group_names(app: &TestApp, token: &str) -> Vec<String> {
    let data = app.ok(Some(token), "{ groups { edges { node { name } } } }", json!({})).await;
    let edges = data["groups"]["edges"].as_array().expect("edges").iter();
    edges.map(|e| e["node"]["name"].as_str().expect("name").to_owned()).collect()
}

async fn provider_groups_follow_the_claim(app: TestApp) {
    let settings = [("OIDC_GROUPS_CLAIM", "groups"), ("OIDC_SCOPES", "openid email profile groups")];
    let (app, _provider) = with_provider(app, &settings).await;
    let (admin, _) = app.register("admin@example.com").await;
    let (uma, _) = app.register("uma@example.com").await;
    let create = "mutation($name: String!) { createGroup(name: $name) { id } }";
    let mut ids = vec![];
    for (token, name) in [(&admin, "Engineering"), (&admin, "Operations"), (&admin, "Manual"), (&uma, "Uma's")] {
        ids.push(app.ok(Some(token), create, json!({ "name": name })).await["createGroup"]["id"].clone());
    }
    let (eng, ops, manual, umas) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // Only an administrator links, and only a group they manage.
    let to_eng = json!({ "id": eng, "name": "eng" });
    assert_eq!(error_code(&app.graphql(Some(&uma), LINK, to_eng.clone()).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(None, LINK, to_eng.clone()).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(Some(&admin), LINK, json!({ "id": umas, "name": "x" })).await), "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(Some(&admin), LINK, json!({ "id": eng, "name": " " })).await), "BAD_USER_INPUT");
    assert_eq!(app.ok(Some(&admin), LINK, to_eng).await["linkGroupToProvider"]["providerGroup"], "eng");
    app.ok(Some(&admin), LINK, json!({ "id": ops, "name": "ops" })).await;

    // Signing in puts the user in the linked groups the provider lists, and only those.
    let mut browser = Browser::new(&app);
    browser.groups = Some("eng,payroll");
    let dev = Account { sub: "dev", email: "dev@example.com", verified: true };
    let token = browser.sign_in(&dev).await;
    assert_eq!(group_names(&app, &token).await, ["Engineering"]);
    let conversation = app.create_conversation(&admin, "Plans").await;
    let share = json!({ "id": conversation, "group": eng, "role": "VIEWER" });
    app.ok(Some(&admin), crate::collaboration::GRANT, share).await;
    let read = "query($id: ID!) { conversation(id: $id) { title } }";
    assert_eq!(app.ok(Some(&token), read, json!({ "id": conversation })).await["conversation"]["title"], "Plans");
    let dev_id = me(&app, &token).await["data"]["me"]["id"].clone();
    let add = "mutation($g: ID!, $u: ID!) { addGroupMember(input: { groupId: $g, userId: $u }) { id } }";
    app.ok(Some(&admin), add, json!({ "g": manual, "u": dev_id })).await;

    // The provider moves them: the next sign-in follows; a group not linked is left alone.
    browser.groups = Some("ops");
    let token = browser.sign_in(&dev).await;
    assert_eq!(group_names(&app, &token).await, ["Manual", "Operations"]);
    assert_eq!(error_code(&app.graphql(Some(&token), read, json!({ "id": conversation })).await), "NOT_FOUND");

    // A token that says nothing of groups changes nothing.
    browser.groups = None;
    let token = browser.sign_in(&dev).await;
    assert_eq!(group_names(&app, &token).await, ["Manual", "Operations"]);

    // Unlinked, a group keeps its members but no longer follows the provider.
    let unlinked = app.ok(Some(&admin), LINK, json!({ "id": ops, "name": null })).await;
    assert!(unlinked["linkGroupToProvider"]["providerGroup"].is_null());
    browser.groups = Some("");
    let token = browser.sign_in(&dev).await;
    assert_eq!(group_names(&app, &token).await, ["Manual", "Operations"]);
    crate::rebuild::rebuild_reproduces(&app).await;
}

on_both_backends!(
    signs_in_through_the_provider,
    links_accounts_by_email_only_when_verified_and_allowed,
    provider_groups_follow_the_claim
);
