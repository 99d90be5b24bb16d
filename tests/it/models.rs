//! The model catalog, per-conversation settings, and model masks.

use serde_json::json;

use crate::support::fake_llm::{BOTH, FakeLlm, Script, Wire};
use crate::support::{TestApp, error_code, on_both_backends};

/// An app served by a fake endpoint of `wire`, offering `models`.
async fn serve(app: TestApp, wire: Wire, models: &str) -> (TestApp, FakeLlm) {
    let fake = FakeLlm::start(wire, Script { tokens: 2, ..Script::default() }).await;
    let settings = fake.settings(Some(models));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (app.restart(&settings).await, fake)
}

async fn the_catalog_and_per_conversation_settings(app: TestApp) {
    let mut app = app;
    for wire in BOTH {
        app = catalog_on(app, wire).await;
    }
}

async fn catalog_on(app: TestApp, wire: Wire) -> TestApp {
    let (app, fake) = serve(app, wire, "gpt-4o, claude-sonnet, llama-3").await;
    let provider = if wire == Wire::OpenAi { "openai" } else { "bedrock" };
    let (token, _) = app.register(&format!("{provider}@example.com")).await;
    let models = app.ok(Some(&token), "{ models { id provider isDefault } }", json!({})).await;
    assert_eq!(
        models["models"],
        json!([
            { "id": "gpt-4o", "provider": provider, "isDefault": true },
            { "id": "claude-sonnet", "provider": provider, "isDefault": false },
            { "id": "llama-3", "provider": provider, "isDefault": false },
        ])
    );
    let created = app
        .ok(
            Some(&token),
            "mutation { createConversation(input: { modelId: \"llama-3\", systemPrompt: \"Be brief.\", temperature: 0.2, maxTokens: 64 }) { id modelId temperature maxTokens } }",
            json!({}),
        )
        .await;
    let conversation = created["createConversation"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["createConversation"]["temperature"], 0.2);
    app.send_and_wait(&token, &conversation, "Hi").await;
    let request = &fake.requests()[0];
    assert_eq!(request["model"], "llama-3");
    assert_eq!(request["max_tokens"], 64);
    assert!((request["temperature"].as_f64().expect("temperature") - 0.2).abs() < 1e-6);
    assert_eq!(request["system"], "Be brief.");
    assert_eq!(request["messages"], json!([{ "role": "user", "content": "Hi" }]));

    for (input, field) in [
        ("{ modelId: \"no-such-model\" }", "modelId"),
        ("{ temperature: 3.5 }", "temperature"),
        ("{ maxTokens: 0 }", "maxTokens"),
    ] {
        let body = app
            .graphql(Some(&token), &format!("mutation {{ createConversation(input: {input}) {{ id }} }}"), json!({}))
            .await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}");
        assert_eq!(body["errors"][0]["extensions"]["field"], field);
    }
    app
}

async fn a_model_mask_hides_models_and_is_enforced(app: TestApp) {
    let (app, fake) = serve(app, Wire::OpenAi, "gpt-4o,claude-sonnet").await;
    let (admin, _) = app.register("admin@example.com").await;
    let (token, user_id) = app.register("bob@example.com").await;
    let open = app
        .ok(Some(&token), "mutation { createConversation(input: { modelId: \"gpt-4o\" }) { id } }", json!({}))
        .await["createConversation"]["id"]
        .as_str()
        .expect("id")
        .to_owned();

    let set = "mutation($id: ID!, $mask: String) { setUserModelMask(userId: $id, mask: $mask) { id modelMask } }";
    let refused = app.graphql(Some(&token), set, json!({ "id": user_id, "mask": "claude-.*" })).await;
    assert_eq!(error_code(&refused), "FORBIDDEN", "only administrators set masks");
    let bad = app.graphql(Some(&admin), set, json!({ "id": user_id, "mask": "(claude" })).await;
    assert_eq!(error_code(&bad), "BAD_USER_INPUT");
    let masked = app.ok(Some(&admin), set, json!({ "id": user_id, "mask": "claude-.*" })).await;
    assert_eq!(masked["setUserModelMask"]["modelMask"], "claude-.*");

    let models = app.ok(Some(&token), "{ models { id } }", json!({})).await;
    assert_eq!(models["models"], json!([{ "id": "claude-sonnet" }]), "hidden from the list");
    let create = app
        .graphql(Some(&token), "mutation { createConversation(input: { modelId: \"gpt-4o\" }) { id } }", json!({}))
        .await;
    assert_eq!(error_code(&create), "FORBIDDEN");
    let before = fake.requests().len();
    let send = app.send_message(&token, &open, "Still there?").await;
    assert_eq!(error_code(&send), "FORBIDDEN", "refused on send, not only hidden");
    assert_eq!(fake.requests().len(), before, "the model was never called");

    let allowed = app
        .ok(Some(&token), "mutation { createConversation(input: { modelId: \"claude-sonnet\" }) { id } }", json!({}))
        .await["createConversation"]["id"]
        .as_str()
        .expect("id")
        .to_owned();
    app.send_and_wait(&token, &allowed, "Hello").await;
    assert_eq!(fake.requests().last().expect("a request")["model"], "claude-sonnet");

    app.ok(Some(&admin), set, json!({ "id": user_id, "mask": null })).await;
    assert!(app.send_message(&token, &open, "Now?").await.get("errors").is_none(), "no mask allows all");
}

async fn the_cli_sets_model_masks(app: TestApp) {
    let (token, _) = app.register("ada@example.com").await;
    let (ok, out) = app.cli(&["user", "set-model-mask", "ada@example.com", "nothing-matches"], "");
    assert!(ok, "{out}");
    let models = app.ok(Some(&token), "{ models { id } me { modelMask } }", json!({})).await;
    assert_eq!(models["models"], json!([]));
    assert_eq!(models["me"]["modelMask"], "nothing-matches");
    let (ok, out) = app.cli(&["user", "set-model-mask", "ada@example.com"], "");
    assert!(ok, "{out}");
    let models = app.ok(Some(&token), "{ models { id } }", json!({})).await;
    assert_eq!(models["models"], json!([{ "id": "demo" }]));
}

/// Two OpenAI-compatible endpoints and Bedrock from a models file, and presets from a
/// presets file: each model is served by its own endpoint, under its upstream id, with
/// its default sampling; a preset starts a conversation with its system prompt.
async fn a_models_file_and_presets(app: TestApp) {
    let script = Script { tokens: 2, ..Script::default() };
    let (first, second, bedrock) = (
        FakeLlm::start(Wire::OpenAi, script.clone()).await,
        FakeLlm::start(Wire::OpenAi, script.clone()).await,
        FakeLlm::start(Wire::Bedrock, script).await,
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let models = dir.path().join("models.yaml");
    std::fs::write(
        &models,
        format!(
            "default_model: smart
openai:
  - name: litellm
    base_url: http://{}/v1
    api_key_env: LITELLM_KEY
    models:
      - id: smart
        display_name: Smart one
        upstream_id: openai/gpt-4o
        temperature: 0.3
        max_tokens: 99
  - name: ollama
    base_url: http://{}/v1
bedrock:
  region: us-east-1
  endpoint_url: http://{}
  models: [claude]
",
            first.address, second.address, bedrock.address
        ),
    )
    .expect("write models");
    let presets = dir.path().join("presets.yaml");
    std::fs::write(&presets, "pirate:\n  description: Talks like a pirate\n  content: Answer like a pirate.\n")
        .expect("write presets");
    let app = app
        .restart(&[
            ("LITESKILL_MODELS_FILE", models.to_str().expect("path")),
            ("LITESKILL_PRESETS_FILE", presets.to_str().expect("path")),
            ("LITELLM_KEY", "sk-litellm"),
            ("AWS_BEARER_TOKEN_BEDROCK", "bedrock-api-key"),
        ])
        .await;
    let (token, _) = app.register("ada@example.com").await;
    let listed = app
        .ok(
            Some(&token),
            "{ models { id displayName provider isDefault temperature maxTokens } systemPromptPresets { key description content } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed["models"],
        json!([
            { "id": "claude", "displayName": "claude", "provider": "bedrock", "isDefault": false, "temperature": null, "maxTokens": null },
            { "id": "smart", "displayName": "Smart one", "provider": "openai", "isDefault": true, "temperature": 0.3, "maxTokens": 99 },
            { "id": "fake-model", "displayName": "fake-model", "provider": "openai", "isDefault": false, "temperature": null, "maxTokens": null },
        ])
    );
    assert_eq!(
        listed["systemPromptPresets"],
        json!([{ "key": "pirate", "description": "Talks like a pirate", "content": "Answer like a pirate." }])
    );

    let create = "mutation($input: CreateConversationInput!) { createConversation(input: $input) { id systemPrompt } }";
    let created = app.ok(Some(&token), create, json!({ "input": { "systemPromptPreset": "pirate" } })).await;
    assert_eq!(created["createConversation"]["systemPrompt"], "Answer like a pirate.");
    let smart = created["createConversation"]["id"].as_str().expect("id").to_owned();
    app.send_and_wait(&token, &smart, "Hi").await;
    let request = &first.requests()[0];
    assert_eq!(request["model"], "openai/gpt-4o", "sent under its upstream id");
    assert_eq!(request["authorization"], "Bearer sk-litellm");
    assert_eq!(request["system"], "Answer like a pirate.");
    assert_eq!(request["max_tokens"], 99, "the model's default");
    assert!((request["temperature"].as_f64().expect("temperature") - 0.3).abs() < 1e-6);

    for (model, fake) in [("fake-model", &second), ("claude", &bedrock)] {
        let created = app.ok(Some(&token), create, json!({ "input": { "modelId": model } })).await;
        let id = created["createConversation"]["id"].as_str().expect("id").to_owned();
        app.send_and_wait(&token, &id, "Hi").await;
        assert_eq!(fake.requests().len(), 1, "{model} is served by its own endpoint");
    }
    assert_eq!(first.requests().len(), 1);

    for input in
        [json!({ "systemPromptPreset": "ninja" }), json!({ "systemPromptPreset": "pirate", "systemPrompt": "x" })]
    {
        let body = app.graphql(Some(&token), create, json!({ "input": input })).await;
        assert_eq!(error_code(&body), "BAD_USER_INPUT", "{input}");
        assert_eq!(body["errors"][0]["extensions"]["field"], "systemPromptPreset");
    }
    let anonymous = app.graphql(None, "{ systemPromptPresets { key } }", json!({})).await;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED");
}

/// Settings changed mid-conversation apply to the next turn; left-out fields stay, `null`
/// returns one to the default; only a reader of the conversation may change them, and
/// only to a model they may use.
async fn settings_change_for_the_next_turns(app: TestApp) {
    let (app, fake) = serve(app, Wire::OpenAi, "gpt-4o, llama-3").await;
    let (admin, _) = app.register("admin@example.com").await;
    let (token, user_id) = app.register("ada@example.com").await;
    let fields = "id modelId systemPrompt temperature maxTokens";
    let created = app
        .ok(
            Some(&token),
            &format!("mutation {{ createConversation(input: {{ systemPrompt: \"Be brief.\", temperature: 0.5 }}) {{ {fields} }} }}"),
            json!({}),
        )
        .await;
    let id = created["createConversation"]["id"].as_str().expect("id").to_owned();
    let update = format!(
        "mutation($id: ID!, $input: ConversationSettingsInput!) {{ updateConversationSettings(id: $id, input: $input) {{ {fields} }} }}"
    );
    let changed = app
        .ok(
            Some(&token),
            &update,
            json!({ "id": id, "input": { "modelId": "llama-3", "temperature": null, "maxTokens": 32 } }),
        )
        .await;
    assert_eq!(
        changed["updateConversationSettings"],
        json!({ "id": id, "modelId": "llama-3", "systemPrompt": "Be brief.", "temperature": null, "maxTokens": 32 })
    );
    app.send_and_wait(&token, &id, "Hi").await;
    let request = &fake.requests()[0];
    assert_eq!(
        (&request["model"], &request["max_tokens"], &request["system"]),
        (&json!("llama-3"), &json!(32), &json!("Be brief."))
    );
    assert!(request["temperature"].is_null(), "cleared: {request}");

    let back =
        app.ok(Some(&token), &update, json!({ "id": id, "input": { "modelId": null, "systemPrompt": null } })).await;
    assert_eq!(back["updateConversationSettings"]["modelId"], json!(null));
    assert_eq!(back["updateConversationSettings"]["systemPrompt"], json!(null));
    assert_eq!(back["updateConversationSettings"]["maxTokens"], 32, "left out, kept");
    let history = app
        .ok(
            Some(&token),
            "query($id: ID!) { conversationHistory(conversationId: $id) { edges { node { type } } } }",
            json!({ "id": id }),
        )
        .await;
    let types: Vec<&str> = history["conversationHistory"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .filter_map(|e| e["node"]["type"].as_str())
        .collect();
    assert_eq!(types.iter().filter(|t| **t == "ConversationSettingsChanged").count(), 2);

    for (input, code) in [
        (json!({ "modelId": "no-such-model" }), "BAD_USER_INPUT"),
        (json!({ "temperature": 5 }), "BAD_USER_INPUT"),
        (json!({ "systemPrompt": "x", "systemPromptPreset": "y" }), "BAD_USER_INPUT"),
    ] {
        let body = app.graphql(Some(&token), &update, json!({ "id": id, "input": input })).await;
        assert_eq!(error_code(&body), code, "{input}");
    }
    let (stranger, _) = app.register("eve@example.com").await;
    let body = app.graphql(Some(&stranger), &update, json!({ "id": id, "input": { "maxTokens": 1 } })).await;
    assert_eq!(error_code(&body), "NOT_FOUND");
    let mask = "mutation($id: ID!) { setUserModelMask(userId: $id, mask: \"gpt-.*\") { id } }";
    app.ok(Some(&admin), mask, json!({ "id": user_id })).await;
    let body = app.graphql(Some(&token), &update, json!({ "id": id, "input": { "modelId": "llama-3" } })).await;
    assert_eq!(error_code(&body), "FORBIDDEN");
    app.ok(Some(&token), "mutation($id: ID!) { archiveConversation(id: $id) { id } }", json!({ "id": id })).await;
    let body = app.graphql(Some(&token), &update, json!({ "id": id, "input": { "maxTokens": 1 } })).await;
    assert_eq!(error_code(&body), "CONFLICT", "archived conversations are read-only");
}

on_both_backends!(
    settings_change_for_the_next_turns,
    a_models_file_and_presets,
    the_catalog_and_per_conversation_settings,
    a_model_mask_hides_models_and_is_enforced,
    the_cli_sets_model_masks,
);
