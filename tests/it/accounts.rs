//! Password accounts and sessions through the GraphQL API.

use serde_json::json;

use crate::support::{TestApp, TestDb, error_code, on_both_backends};

const ME: &str = "{ me { id email name role } }";

async fn register_login_me_logout(app: TestApp) {
    let (first_token, first_id) = app.register("Ada@Example.com").await;
    let me = app.ok(Some(&first_token), ME, json!({})).await;
    assert_eq!(me["me"]["id"], first_id.as_str());
    assert_eq!(me["me"]["email"], "ada@example.com", "email is normalised");
    assert_eq!(me["me"]["role"], "ADMIN", "the first account is the administrator");

    let (second_token, _) = app.register("bob@example.com").await;
    assert_eq!(app.ok(Some(&second_token), ME, json!({})).await["me"]["role"], "USER");

    let login = app.login("ada@example.com", "correct horse battery").await;
    let token = login["data"]["login"]["token"].as_str().expect("token");
    assert_ne!(token, first_token, "each login is a new session");
    assert_eq!(app.ok(Some(token), ME, json!({})).await["me"]["id"], first_id.as_str());

    assert_eq!(app.ok(Some(token), "mutation { logout }", json!({})).await["logout"], true);
    let after = app.graphql(Some(token), ME, json!({})).await;
    assert_eq!(error_code(&after), "UNAUTHENTICATED", "a logged-out token is dead");
    assert!(app.graphql(Some(&first_token), ME, json!({})).await.get("errors").is_none(), "other sessions live on");
}

async fn wrong_password_and_unknown_account_look_the_same(app: TestApp) {
    app.register("ada@example.com").await;
    for (email, password) in [("ada@example.com", "not the password"), ("nobody@example.com", "whatever123")] {
        let body = app.login(email, password).await;
        assert_eq!(error_code(&body), "UNAUTHENTICATED");
        assert_eq!(body["errors"][0]["message"], "invalid email or password");
        assert!(body["data"].is_null());
    }
}

async fn duplicate_email_is_a_conflict_and_writes_nothing(app: TestApp) {
    app.register("ada@example.com").await;
    let before = app.event_count().await;
    let body = app
        .graphql(
            None,
            "mutation { register(input: { email: \" ADA@example.com\", password: \"another password\", name: \"A\" }) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "CONFLICT");
    assert_eq!(body["errors"][0]["extensions"]["reason"], "EMAIL_TAKEN");
    assert_eq!(app.event_count().await, before);
}

async fn bad_registrations_write_nothing(app: TestApp) {
    let before = app.event_count().await;
    for (email, password, name, field) in [
        ("not-an-email", "correct horse battery", "A", "email"),
        ("a@example.com", "short", "A", "password"),
        ("a@example.com", "correct horse battery", "   ", "name"),
    ] {
        let body = app
            .graphql(
                None,
                "mutation($input: RegisterInput!) { register(input: $input) { token } }",
                json!({ "input": { "email": email, "password": password, "name": name } }),
            )
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{body:#}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    assert_eq!(app.event_count().await, before);
}

async fn session_cookie_authenticates_and_logout_clears_it(app: TestApp) {
    app.register("ada@example.com").await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .json(&json!({ "query": "mutation { login(input: { email: \"ada@example.com\", password: \"correct horse battery\" }) { token } }" }))
        .send()
        .await
        .expect("login");
    let cookie = response.headers()["set-cookie"].to_str().expect("cookie").to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_owned();

    let me: serde_json::Value = app
        .http
        .post(app.url("/graphql"))
        .header("Cookie", &pair)
        .json(&json!({ "query": ME }))
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["data"]["me"]["email"], "ada@example.com");

    let logout = app
        .http
        .post(app.url("/graphql"))
        .header("Cookie", &pair)
        .json(&json!({ "query": "mutation { logout }" }))
        .send()
        .await
        .expect("logout");
    assert!(logout.headers()["set-cookie"].to_str().expect("cookie").contains("Max-Age=0"));
}

on_both_backends!(
    register_login_me_logout,
    wrong_password_and_unknown_account_look_the_same,
    duplicate_email_is_a_conflict_and_writes_nothing,
    bad_registrations_write_nothing,
    session_cookie_authenticates_and_logout_clears_it,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_registration_is_refused() {
    let app = TestApp::start_with(TestDb::sqlite(), &[("REGISTRATION", "closed")]).await;
    let body = app
        .graphql(
            None,
            "mutation { register(input: { email: \"a@example.com\", password: \"correct horse battery\", name: \"A\" }) { token } }",
            json!({}),
        )
        .await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    assert_eq!(app.event_count().await, 0);
}
