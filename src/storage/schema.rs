//! Table definitions shared by both backends (see `sql_types` for the portable columns).

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    events (position) {
        position -> BigInt,
        tx_id -> BigInt,
        stream_id -> Uuid,
        stream_version -> BigInt,
        event_type -> Text,
        event_version -> SmallInt,
        payload -> Jsonb,
        actor_id -> Nullable<Uuid>,
        occurred_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    users (id) {
        id -> Uuid,
        email -> Text,
        name -> Text,
        role -> Text,
        disabled -> Bool,
        created_at -> UtcTime,
        updated_at -> UtcTime,
        model_mask -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    conversations (id) {
        id -> Uuid,
        owner_id -> Uuid,
        title -> Text,
        model_id -> Nullable<Text>,
        system_prompt -> Nullable<Text>,
        status -> Text,
        archived -> Bool,
        message_count -> BigInt,
        version -> BigInt,
        created_at -> UtcTime,
        updated_at -> UtcTime,
        temperature -> Nullable<Double>,
        max_tokens -> Nullable<BigInt>,
        forked_from_id -> Nullable<Uuid>,
        fork_message_id -> Nullable<Uuid>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    messages (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        seq -> BigInt,
        role -> Text,
        content -> Text,
        author_id -> Nullable<Uuid>,
        created_at -> UtcTime,
        status -> Text,
        model_id -> Nullable<Text>,
        stop_reason -> Nullable<Text>,
        error -> Nullable<Text>,
        input_tokens -> Nullable<BigInt>,
        output_tokens -> Nullable<BigInt>,
        time_to_first_token_ms -> Nullable<BigInt>,
        duration_ms -> Nullable<BigInt>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    password_credentials (user_id) {
        user_id -> Uuid,
        password_hash -> Text,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    sessions (id) {
        id -> Uuid,
        user_id -> Uuid,
        token_hash -> Binary,
        user_agent -> Nullable<Text>,
        created_at -> UtcTime,
        last_seen_at -> UtcTime,
        expires_at -> UtcTime,
        method -> Text,
        client_address -> Nullable<Text>,
    }
}

diesel::joinable!(messages -> conversations (conversation_id));

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::Uuid;

    snapshots (stream_id) {
        stream_id -> Uuid,
        version -> BigInt,
        state -> Jsonb,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    reply_checkpoints (message_id) {
        message_id -> Uuid,
        conversation_id -> Uuid,
        text -> Text,
        heartbeat_at -> UtcTime,
        pieces -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    secrets (id) {
        id -> Uuid,
        purpose -> Text,
        sealed -> Text,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    mcp_servers (id) {
        id -> Uuid,
        owner_id -> Nullable<Uuid>,
        name -> Text,
        url -> Text,
        header_names -> Text,
        secret_id -> Nullable<Uuid>,
        removed -> Bool,
        created_at -> UtcTime,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    tool_calls (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        message_id -> Uuid,
        provider_call_id -> Text,
        server_id -> Nullable<Uuid>,
        server_name -> Nullable<Text>,
        tool_name -> Text,
        arguments -> Text,
        status -> Text,
        by_policy -> Bool,
        decided_by -> Nullable<Uuid>,
        reason -> Nullable<Text>,
        result -> Nullable<Text>,
        is_error -> Bool,
        duration_ms -> Nullable<BigInt>,
        created_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    tool_policies (id) {
        id -> Uuid,
        user_id -> Uuid,
        server_id -> Uuid,
        tool_name -> Nullable<Text>,
        policy -> Text,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::Uuid;

    conversation_lineage (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        ancestor_id -> Uuid,
        until_seq -> BigInt,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    conversation_access (id) {
        id -> Uuid,
        conversation_id -> Uuid,
        user_id -> Nullable<Uuid>,
        group_id -> Nullable<Uuid>,
        role -> Text,
        granted_by -> Nullable<Uuid>,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    user_groups (id) {
        id -> Uuid,
        name -> Text,
        creator_id -> Uuid,
        deleted -> Bool,
        created_at -> UtcTime,
        updated_at -> UtcTime,
        provider_group -> Nullable<Text>,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    group_members (id) {
        id -> Uuid,
        group_id -> Uuid,
        user_id -> Uuid,
        active -> Bool,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    user_identities (id) {
        id -> Uuid,
        user_id -> Uuid,
        issuer -> Text,
        subject -> Text,
        created_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    registration_settings (id) {
        id -> Uuid,
        policy -> Text,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    invites (id) {
        id -> Uuid,
        code_hash -> Text,
        email -> Nullable<Text>,
        role -> Text,
        created_by -> Nullable<Uuid>,
        created_at -> UtcTime,
        expires_at -> UtcTime,
        status -> Text,
        redeemed_by -> Nullable<Uuid>,
        updated_at -> UtcTime,
    }
}

diesel::table! {
    use diesel::sql_types::*;
    use crate::storage::sql_types::{UtcTime, Uuid};

    login_attempts (id) {
        id -> Uuid,
        key -> Binary,
        attempted_at -> UtcTime,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    user_identities,
    registration_settings,
    invites,
    conversation_lineage,
    conversation_access,
    user_groups,
    group_members,
    mcp_servers,
    tool_calls,
    tool_policies,
    reply_checkpoints,
    secrets,
    events,
    users,
    conversations,
    messages,
    password_credentials,
    sessions,
    snapshots
);
