//! Sessions on every device, administration, the registration policy with invites, and
//! the abuse limits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, error_code, on_both_backends};
use crate::websocket::closed_with;

const PASSWORD: &str = "correct horse battery";

/// Signs in from a device that names itself `user_agent`; returns the token.
async fn sign_in_on(app: &TestApp, email: &str, user_agent: &str) -> String {
    let query = "mutation($email: String!, $password: String!) { login(input: { email: $email, password: $password }) { token } }";
    let body: Value = app
        .http
        .post(app.url("/graphql"))
        .header("User-Agent", user_agent)
        .json(&json!({ "query": query, "variables": { "email": email, "password": PASSWORD } }))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("JSON");
    body["data"]["login"]["token"].as_str().unwrap_or_else(|| panic!("signed in: {body:#}")).to_owned()
}

async fn viewer_events(app: &TestApp, token: &str) -> WsClient {
    let (mut socket, ack) = WsClient::connect(
        &app.url("/graphql/ws").replace("http", "ws"),
        Protocol::TransportWs,
        json!({ "token": token }),
    )
    .await;
    ack.expect("connection acknowledged");
    socket.start("events", "subscription { viewerEvents { type } }", json!({})).await;
    socket
}

async fn sessions_on_two_devices(app: TestApp) {
    app.register("ann@example.com").await;
    let laptop = sign_in_on(&app, "ann@example.com", "Laptop/1.0").await;
    let phone = sign_in_on(&app, "ann@example.com", "Phone/2.0").await;
    let mut phone_socket = viewer_events(&app, &phone).await;

    let listed = app.ok(Some(&laptop), "{ mySessions { id userAgent current method clientAddress } }", json!({})).await;
    let sessions = listed["mySessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 3, "registering, the laptop and the phone: {listed:#}");
    let mine: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0]["userAgent"], "Laptop/1.0");
    assert_eq!(mine[0]["method"], "PASSWORD");
    assert_eq!(mine[0]["clientAddress"], "127.0.0.1");
    let phone_id = sessions.iter().find(|s| s["userAgent"] == "Phone/2.0").expect("the phone")["id"].clone();

    // Someone else's session, or one that does not exist, is not found.
    let (stranger, _) = app.register("eve@example.com").await;
    let revoke = "mutation($id: ID!) { revokeSession(id: $id) }";
    assert_eq!(error_code(&app.graphql(Some(&stranger), revoke, json!({ "id": phone_id })).await), "NOT_FOUND");
    assert_eq!(error_code(&app.graphql(None, revoke, json!({ "id": phone_id })).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(None, "{ mySessions { id } }", json!({})).await), "UNAUTHENTICATED");

    // Revoked from the laptop: the phone's websocket closes and its token stops working.
    assert_eq!(app.ok(Some(&laptop), revoke, json!({ "id": phone_id })).await["revokeSession"], true);
    assert_eq!(closed_with(&mut phone_socket).await, Some(4401));
    assert_eq!(error_code(&app.graphql(Some(&phone), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.graphql(Some(&laptop), revoke, json!({ "id": phone_id })).await), "NOT_FOUND");

    // Every other device at once.
    let tablet = sign_in_on(&app, "ann@example.com", "Tablet/3.0").await;
    let mut tablet_socket = viewer_events(&app, &tablet).await;
    let revoked = app.ok(Some(&laptop), "mutation { revokeOtherSessions }", json!({})).await;
    assert_eq!(revoked["revokeOtherSessions"], 2, "the tablet and the registration session");
    assert_eq!(closed_with(&mut tablet_socket).await, Some(4401));
    let left = app.ok(Some(&laptop), "{ mySessions { userAgent } }", json!({})).await;
    assert_eq!(left["mySessions"], json!([{ "userAgent": "Laptop/1.0" }]));
}

async fn administrators_run_accounts(app: TestApp) {
    let (admin, admin_id) = app.register("root@example.com").await;
    let (user, user_id) = app.register("uma@example.com").await;
    let me = app.ok(Some(&admin), "{ me { role } }", json!({})).await;
    assert_eq!(me["me"]["role"], "ADMIN", "the first account is the administrator");

    let list = "query($after: String) { users(first: 1, after: $after) { edges { node { email role disabled } } pageInfo { hasNextPage endCursor } } }";
    let page = app.ok(Some(&admin), list, json!({})).await;
    assert_eq!(page["users"]["edges"][0]["node"]["email"], "root@example.com");
    let after = page["users"]["pageInfo"]["endCursor"].clone();
    let next = app.ok(Some(&admin), list, json!({ "after": after })).await;
    assert_eq!(next["users"]["edges"][0]["node"]["email"], "uma@example.com");
    assert_eq!(next["users"]["pageInfo"]["hasNextPage"], false);
    assert_eq!(error_code(&app.graphql(Some(&user), list, json!({})).await), "FORBIDDEN");
    assert_eq!(error_code(&app.graphql(None, list, json!({})).await), "UNAUTHENTICATED");

    // The last administrator can neither step down nor be disabled.
    let set_role = "mutation($id: ID!, $role: UserRole!) { setUserRole(userId: $id, role: $role) { role } }";
    let disable = "mutation($id: ID!) { disableUser(userId: $id) { disabled } }";
    let enable = "mutation($id: ID!) { enableUser(userId: $id) { disabled } }";
    let events = app.event_count().await;
    let refused = app.graphql(Some(&admin), set_role, json!({ "id": admin_id, "role": "USER" })).await;
    assert_eq!(error_code(&refused), "CONFLICT");
    assert_eq!(refused["errors"][0]["extensions"]["reason"], "LAST_ADMIN");
    let refused = app.graphql(Some(&admin), disable, json!({ "id": admin_id })).await;
    assert_eq!(refused["errors"][0]["extensions"]["reason"], "LAST_ADMIN");
    assert_eq!(app.event_count().await, events, "nothing was recorded");
    // Users may not administer, themselves included.
    for (query, variables) in [
        (set_role, json!({ "id": user_id, "role": "ADMIN" })),
        (disable, json!({ "id": admin_id })),
        ("mutation($id: ID!) { setUserModelMask(userId: $id, mask: \"x\") { id } }", json!({ "id": user_id })),
        ("mutation { setRegistrationPolicy(policy: CLOSED) }", json!({})),
        ("mutation { createInvite(input: {}) { code } }", json!({})),
    ] {
        assert_eq!(error_code(&app.graphql(Some(&user), query, variables.clone()).await), "FORBIDDEN", "{query}");
        assert_eq!(error_code(&app.graphql(None, query, variables).await), "UNAUTHENTICATED", "{query}");
    }

    // With a second administrator, the first may step down.
    app.ok(Some(&admin), set_role, json!({ "id": user_id, "role": "ADMIN" })).await;
    let demoted = app.ok(Some(&user), set_role, json!({ "id": admin_id, "role": "USER" })).await;
    assert_eq!(demoted["setUserRole"]["role"], "USER");

    // Disabling signs the account out everywhere; enabling lets it sign in again.
    let mut socket = viewer_events(&app, &admin).await;
    assert_eq!(app.ok(Some(&user), disable, json!({ "id": admin_id })).await["disableUser"]["disabled"], true);
    assert_eq!(closed_with(&mut socket).await, Some(4401));
    assert_eq!(error_code(&app.graphql(Some(&admin), "{ me { id } }", json!({})).await), "UNAUTHENTICATED");
    assert_eq!(error_code(&app.login("root@example.com", PASSWORD).await), "FORBIDDEN");
    app.ok(Some(&user), enable, json!({ "id": admin_id })).await;
    assert!(app.login("root@example.com", PASSWORD).await["errors"].is_null());
    let unknown = json!({ "id": uuid::Uuid::new_v4().to_string() });
    assert_eq!(error_code(&app.graphql(Some(&user), disable, unknown).await), "NOT_FOUND");
}

async fn registration_policy_and_invites(app: TestApp) {
    let (admin, _) = app.register("root@example.com").await;
    let register = "mutation($email: String!, $code: String) { register(input: { email: $email, password: \"correct horse battery\", name: \"N\", inviteCode: $code }) { user { email role } } }";
    let policy = "mutation($policy: RegistrationPolicy!) { setRegistrationPolicy(policy: $policy) }";
    let options = "{ signInOptions { registration singleSignOn { name } } }";
    assert_eq!(
        app.ok(None, options, json!({})).await["signInOptions"],
        json!({ "registration": "OPEN", "singleSignOn": null })
    );

    app.ok(Some(&admin), policy, json!({ "policy": "CLOSED" })).await;
    assert_eq!(app.ok(None, options, json!({})).await["signInOptions"]["registration"], "CLOSED");
    assert_eq!(error_code(&app.graphql(None, register, json!({ "email": "a@example.com" })).await), "FORBIDDEN");

    app.ok(Some(&admin), policy, json!({ "policy": "INVITE_ONLY" })).await;
    assert_eq!(error_code(&app.graphql(None, register, json!({ "email": "a@example.com" })).await), "FORBIDDEN");
    let create =
        "mutation($input: CreateInviteInput!) { createInvite(input: $input) { code invite { id email role status } } }";
    let for_bea =
        app.ok(Some(&admin), create, json!({ "input": { "email": "bea@example.com", "role": "ADMIN" } })).await;
    let code = for_bea["createInvite"]["code"].as_str().expect("code");
    assert_eq!(for_bea["createInvite"]["invite"]["status"], "open");

    let events = app.event_count().await;
    let wrong = app.graphql(None, register, json!({ "email": "mallory@example.com", "code": code })).await;
    assert_eq!(error_code(&wrong), "BAD_USER_INPUT");
    assert_eq!(
        error_code(&app.graphql(None, register, json!({ "email": "x@example.com", "code": "nope" })).await),
        "BAD_USER_INPUT"
    );
    assert_eq!(app.event_count().await, events, "refused registrations write nothing");
    let bea = app.ok(None, register, json!({ "email": "bea@example.com", "code": code })).await;
    assert_eq!(bea["register"]["user"], json!({ "email": "bea@example.com", "role": "ADMIN" }));
    let again = app.graphql(None, register, json!({ "email": "bea2@example.com", "code": code })).await;
    assert_eq!(error_code(&again), "BAD_USER_INPUT", "an invite is used once");

    // A revoked invite no longer works.
    let open = app.ok(Some(&admin), create, json!({ "input": { "validForHours": 1 } })).await;
    let (code, id) =
        (open["createInvite"]["code"].as_str().expect("code"), open["createInvite"]["invite"]["id"].clone());
    let revoked =
        app.ok(Some(&admin), "mutation($id: ID!) { revokeInvite(id: $id) { status } }", json!({ "id": id })).await;
    assert_eq!(revoked["revokeInvite"]["status"], "revoked");
    assert_eq!(
        error_code(&app.graphql(None, register, json!({ "email": "c@example.com", "code": code })).await),
        "BAD_USER_INPUT"
    );
    let listed = app.ok(Some(&admin), "{ invites(first: 10) { edges { node { status } } } }", json!({})).await;
    assert_eq!(
        listed["invites"]["edges"],
        json!([{ "node": { "status": "revoked" } }, { "node": { "status": "redeemed" } }])
    );
    let bad = app.graphql(Some(&admin), create, json!({ "input": { "validForHours": 0 } })).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");

    // The policy, invites and accounts are events: a rebuild reproduces them.
    crate::rebuild::rebuild_reproduces(&app).await;
    assert_eq!(app.ok(None, options, json!({})).await["signInOptions"]["registration"], "INVITE_ONLY");
}

async fn wrong_passwords_are_throttled(app: TestApp) {
    let settings = [("LOGIN_MAX_FAILURES", "10"), ("LOGIN_MAX_FAILURES_PER_ADDRESS", "15"), ("LOGIN_WINDOW_SECS", "3")];
    let app = app.restart(&settings).await;
    // Attempts count on every server that shares the database.
    let other = app.another_instance(&settings).await;
    app.register("ann@example.com").await;
    app.register("ben@example.com").await;
    let mut codes = vec![];
    for server in [&app, &other].repeat(10) {
        codes.push(error_code(&server.login("ann@example.com", "wrong password").await).to_owned());
    }
    assert_eq!(codes[..10], vec!["UNAUTHENTICATED"; 10]);
    assert_eq!(codes[10..], vec!["RATE_LIMITED"; 10]);
    let throttled = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(error_code(&throttled), "RATE_LIMITED", "even the right password, while throttled");
    let retry = throttled["errors"][0]["extensions"]["retryAfterSeconds"].as_u64().expect("a retry hint");
    assert!((1..=3).contains(&retry), "{throttled:#}");
    // Ben's account is fine, until this address has failed too often.
    assert!(app.login("ben@example.com", PASSWORD).await["errors"].is_null());
    for _ in 0..5 {
        assert_eq!(error_code(&app.login("nobody@example.com", "guess").await), "UNAUTHENTICATED");
    }
    assert_eq!(error_code(&app.login("ben@example.com", PASSWORD).await), "RATE_LIMITED");

    tokio::time::sleep(Duration::from_secs(retry + 1)).await;
    assert!(app.login("ann@example.com", PASSWORD).await["errors"].is_null(), "the window has passed");
    assert!(app.login("ben@example.com", PASSWORD).await["errors"].is_null());

    // Guesses sent all at once, to both servers, cannot slip past the count.
    let guesses = [&app, &other].repeat(10).into_iter().map(|server| server.login("ann@example.com", "guess"));
    let answers = futures_util::future::join_all(guesses).await;
    let failed = answers.iter().filter(|answer| error_code(answer) == "UNAUTHENTICATED").count();
    assert_eq!(failed, 10, "the rest are RATE_LIMITED");
}

async fn streams_and_subscriptions_are_capped(app: TestApp) {
    let app = app
        .restart(&[
            ("MAX_STREAMS_PER_USER", "1"),
            ("LITESKILL_DEMO_DELAY_MS", "100"),
            ("WS_MAX_SUBSCRIPTIONS", "2"),
            ("WS_INIT_TIMEOUT_SECS", "1"),
        ])
        .await;
    let (token, _) = app.register("ann@example.com").await;
    let (first, second) = (app.create_conversation(&token, "one").await, app.create_conversation(&token, "two").await);
    assert!(app.send_message(&token, &first, "hello").await["errors"].is_null());
    let events = app.event_count().await;
    let refused = app.send_message(&token, &second, "hello").await;
    assert_eq!(error_code(&refused), "RATE_LIMITED", "{refused:#}");
    assert_eq!(app.event_count().await, events, "the refused message was not recorded");
    app.ok(Some(&token), "mutation($id: ID!) { cancelStream(conversationId: $id) { id } }", json!({ "id": first }))
        .await;
    app.wait_until_idle(&token, &first).await;
    let mut sent = app.send_message(&token, &second, "hello").await;
    for _ in 0..50 {
        // The slot comes back when the first reply's task has wound down.
        if sent["errors"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        sent = app.send_message(&token, &second, "hello").await;
    }
    assert!(sent["errors"].is_null(), "{sent:#}");

    // Subscriptions per connection.
    let url = app.url("/graphql/ws").replace("http", "ws");
    let (mut socket, ack) = WsClient::connect(&url, Protocol::TransportWs, json!({ "token": token })).await;
    ack.expect("acknowledged");
    let subscription = "subscription { viewerEvents { type } }";
    socket.start("a", subscription, json!({})).await;
    socket.start("b", subscription, json!({})).await;
    socket.start("c", subscription, json!({})).await;
    let third = socket.next_result().await.expect("an answer");
    assert_eq!(third["errors"][0]["extensions"]["code"], "RATE_LIMITED", "{third:#}");

    // A socket that never sends `connection_init` is closed.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).expect("request");
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
    let (mut silent, _) = tokio_tungstenite::connect_async(request).await.expect("connects");
    let closed = tokio::time::timeout(Duration::from_secs(5), futures_util::StreamExt::next(&mut silent)).await;
    match closed {
        Ok(Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(frame))))) => {
            assert_eq!(u16::from(frame.code), 4408)
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
}

on_both_backends!(
    sessions_on_two_devices,
    administrators_run_accounts,
    registration_policy_and_invites,
    wrong_passwords_are_throttled,
    streams_and_subscriptions_are_capped,
);
