//! The authorization matrix: every operation on a conversation or a group, by every kind
//! of caller, with the exact outcome each must get. Unknown and not-yours look the same
//! (NOT_FOUND); a caller who can see a thing but not change it gets FORBIDDEN.

use serde_json::{Value, json};

use crate::support::ws::{Protocol, WsClient};
use crate::support::{TestApp, error_code, on_both_backends};

/// Callers, in the order each operation is tried: the ones that succeed come last, so a
/// success (an archive, a revocation) cannot change what an earlier caller gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Stranger,
    Former,
    GroupViewer,
    Viewer,
    Editor,
    Owner,
}

const CALLERS: [Caller; 7] = [
    Caller::Anonymous,
    Caller::Stranger,
    Caller::Former,
    Caller::GroupViewer,
    Caller::Viewer,
    Caller::Editor,
    Caller::Owner,
];

const OK: &str = "OK";
const NF: &str = "NOT_FOUND";
const FB: &str = "FORBIDDEN";
const UA: &str = "UNAUTHENTICATED";
const CF: &str = "CONFLICT";
const BI: &str = "BAD_USER_INPUT";

/// What each caller gets, in [`CALLERS`] order.
type Outcomes = [&'static str; 7];
const READ: Outcomes = [UA, NF, NF, OK, OK, OK, OK];
const WRITE: Outcomes = [UA, NF, NF, FB, FB, OK, OK];
const OWNER: Outcomes = [UA, NF, NF, FB, FB, FB, OK];

/// Operations on a conversation `$id` holding one exchange (`$message`, `$reply`).
const CONVERSATION_OPERATIONS: &[(&str, Outcomes)] = &[
    ("query($id: ID!) { conversation(id: $id) { id viewerRole } }", READ),
    ("query($id: ID!) { conversation(id: $id) { messages { edges { node { id } } } } }", READ),
    ("query($id: ID!) { conversation(id: $id) { access { role } forks { edges { node { id } } } } }", READ),
    ("query($id: ID!) { conversationHistory(conversationId: $id) { edges { node { type } } } }", READ),
    (
        "mutation($id: ID!, $message: ID!) { forkConversation(input: { conversationId: $id, atMessageId: $message }) { id } }",
        READ,
    ),
    (
        "mutation($message: ID!) { editMessage(input: { messageId: $message, content: \"again\" }) { message { id } } }",
        READ,
    ),
    ("mutation($reply: ID!) { regenerateResponse(input: { messageId: $reply }) { message { id } } }", READ),
    ("mutation($id: ID!) { sendMessage(input: { conversationId: $id, content: \"hi\" }) { id } }", WRITE),
    // Nothing streams, so those who may cancel are told so.
    ("mutation($id: ID!) { cancelStream(conversationId: $id) { id } }", [UA, NF, NF, FB, FB, CF, CF]),
    ("mutation($id: ID!) { renameConversation(id: $id, title: \"Renamed\") { id } }", OWNER),
    ("mutation($id: ID!) { updateConversationSettings(id: $id, input: { maxTokens: 50 }) { id } }", OWNER),
    (
        "mutation($id: ID!, $user: ID!) { grantAccess(input: { conversationId: $id, userId: $user, role: VIEWER }) { id } }",
        OWNER,
    ),
    ("mutation($id: ID!, $user: ID!) { revokeAccess(input: { conversationId: $id, userId: $user }) { id } }", OWNER),
    ("mutation($id: ID!) { unarchiveConversation(id: $id) { id } }", OWNER),
    ("mutation($id: ID!) { archiveConversation(id: $id) { id } }", OWNER),
    ("mutation($id: ID!) { leaveConversation(conversationId: $id) }", [UA, NF, NF, OK, OK, OK, BI]),
];

/// Operations on a group `$group` whose creator is the owner and whose member is the
/// group viewer.
const GROUP_OPERATIONS: &[(&str, Outcomes)] = &[
    ("query($group: ID!) { group(id: $group) { name members { id } } }", [UA, NF, NF, OK, NF, NF, OK]),
    (
        "mutation($group: ID!, $user: ID!) { addGroupMember(input: { groupId: $group, userId: $user }) { id } }",
        [UA, NF, NF, FB, NF, NF, OK],
    ),
    (
        "mutation($group: ID!, $user: ID!) { removeGroupMember(input: { groupId: $group, userId: $user }) { id } }",
        [UA, NF, NF, FB, NF, NF, OK],
    ),
    ("mutation($group: ID!) { deleteGroup(id: $group) }", [UA, NF, NF, FB, NF, NF, OK]),
];

const SUBSCRIBE: &str =
    "subscription($id: ID!) { conversationEvents(conversationId: $id) { ... on HistoryEvent { type } } }";
const SEARCH: &str = "query { searchMessages(query: \"matrix\") { edges { node { message { id } } } } }";

struct People {
    tokens: Vec<Option<String>>,
    ids: Vec<Option<String>>,
    group: String,
}

impl People {
    fn token(&self, caller: Caller) -> Option<&str> {
        self.tokens[caller as usize].as_deref()
    }

    fn id(&self, caller: Caller) -> &str {
        self.ids[caller as usize].as_deref().expect("a signed-in caller")
    }
}

async fn people(app: &TestApp) -> People {
    let mut tokens = vec![None];
    let mut ids = vec![None];
    for caller in &CALLERS[1..] {
        let (token, id) = app.register(&format!("{caller:?}@example.com").to_lowercase()).await;
        tokens.push(Some(token));
        ids.push(Some(id));
    }
    let owner = tokens[Caller::Owner as usize].clone();
    let created = app.ok(owner.as_deref(), "mutation { createGroup(name: \"Readers\") { id } }", json!({})).await;
    let group = created["createGroup"]["id"].as_str().expect("id").to_owned();
    let people = People { tokens, ids, group };
    add_member(app, &people, &people.group).await;
    people
}

async fn add_member(app: &TestApp, people: &People, group: &str) {
    let add = "mutation($g: ID!, $u: ID!) { addGroupMember(input: { groupId: $g, userId: $u }) { id } }";
    app.ok(people.token(Caller::Owner), add, json!({ "g": group, "u": people.id(Caller::GroupViewer) })).await;
}

/// A conversation shared with everyone but the stranger (the former member was let go),
/// holding one exchange. Returns its variables.
async fn shared_conversation(app: &TestApp, people: &People) -> Value {
    let owner = people.token(Caller::Owner).expect("owner");
    let id = app.create_conversation(owner, "Matrix").await;
    let message = app.send_and_wait(owner, &id, "matrix secret").await["data"]["sendMessage"]["id"].clone();
    let grant = "mutation($id: ID!, $user: ID, $group: ID, $role: GrantRole!) {
        grantAccess(input: { conversationId: $id, userId: $user, groupId: $group, role: $role }) { id } }";
    for (caller, role) in [(Caller::Editor, "EDITOR"), (Caller::Viewer, "VIEWER"), (Caller::Former, "EDITOR")] {
        app.ok(Some(owner), grant, json!({ "id": id, "user": people.id(caller), "role": role })).await;
    }
    app.ok(Some(owner), grant, json!({ "id": id, "group": people.group, "role": "VIEWER" })).await;
    let revoke = "mutation($id: ID!, $user: ID) { revokeAccess(input: { conversationId: $id, userId: $user }) { id } }";
    app.ok(Some(owner), revoke, json!({ "id": id, "user": people.id(Caller::Former) })).await;
    let listed = app
        .ok(
            Some(owner),
            "query($id: ID!) { conversation(id: $id) { messages { edges { node { id } } } } }",
            json!({ "id": id }),
        )
        .await;
    let reply = listed["conversation"]["messages"]["edges"][1]["node"]["id"].clone();
    json!({ "id": id, "message": message, "reply": reply, "user": people.id(Caller::Editor) })
}

fn outcome(body: &Value) -> &str {
    if body.get("errors").is_some() { error_code(body) } else { OK }
}

async fn every_operation_by_every_caller(app: TestApp) {
    let people = people(&app).await;
    for (operation, expected) in CONVERSATION_OPERATIONS {
        let variables = shared_conversation(&app, &people).await;
        let id = variables["id"].as_str().expect("id").to_owned();
        for (caller, expected) in CALLERS.iter().zip(expected) {
            let before = app.event_count().await;
            let body = app.graphql(people.token(*caller), operation, variables.clone()).await;
            assert_eq!(outcome(&body), *expected, "{caller:?}: {operation}: {body:#}");
            if *expected != OK {
                assert_eq!(app.event_count().await, before, "a refusal writes nothing: {caller:?}: {operation}");
                assert!(!body.to_string().contains("matrix secret"));
            }
            app.wait_until_idle(people.token(Caller::Owner).expect("owner"), &id).await;
        }
    }

    for (operation, expected) in GROUP_OPERATIONS {
        let owner = people.token(Caller::Owner);
        let created = app.ok(owner, "mutation { createGroup(name: \"Team\") { id } }", json!({})).await;
        let group = created["createGroup"]["id"].as_str().expect("id").to_owned();
        add_member(&app, &people, &group).await;
        // Adding the stranger; removing the group's member.
        let target = if operation.contains("remove") { Caller::GroupViewer } else { Caller::Stranger };
        let variables = json!({ "group": group, "user": people.id(target) });
        for (caller, expected) in CALLERS.iter().zip(expected) {
            let body = app.graphql(people.token(*caller), operation, variables.clone()).await;
            assert_eq!(outcome(&body), *expected, "{caller:?}: {operation}: {body:#}");
        }
    }

    // Subscriptions, and search: readers find the message, nobody else does.
    let variables = shared_conversation(&app, &people).await;
    for (caller, expected) in CALLERS.iter().zip(READ) {
        let url = format!("ws://{}/graphql/ws", app.address);
        let payload = people.token(*caller).map_or(json!({}), |token| json!({ "token": token }));
        let (mut client, _) = WsClient::connect(&url, Protocol::TransportWs, payload).await;
        client.start("events", SUBSCRIBE, json!({ "id": variables["id"] })).await;
        let first =
            client.next_result().await.unwrap_or_else(|| json!({ "errors": [{ "extensions": { "code": UA } }] }));
        assert_eq!(outcome(&first), expected, "{caller:?}: conversationEvents: {first:#}");
        if *caller == Caller::Anonymous {
            let body = app.graphql(None, SEARCH, json!({})).await;
            assert_eq!(outcome(&body), UA);
            continue;
        }
        let found = app.ok(people.token(*caller), SEARCH, json!({})).await;
        let hits = found["searchMessages"]["edges"].as_array().map_or(0, Vec::len);
        assert_eq!(hits > 0, expected == OK, "{caller:?}: searchMessages: {found:#}");
    }
}

on_both_backends!(every_operation_by_every_caller);
