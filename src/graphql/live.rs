//! Subscriptions: a conversation's events as they happen, replayed from a cursor first.
//!
//! `conversationEvents` subscribes to the conversation's channel before reading the log,
//! replays what was recorded after the cursor, catches up on the reply streaming on this
//! server (the text so far, as one delta), then relays live messages, skipping anything
//! already sent. So there is no gap and no duplicate however the two race.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, ID, SimpleObject, Subscription, Union};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream};
use tokio::sync::broadcast::error::RecvError;

use super::account::User;
use super::conversation::{HistoryEvent, readable};
use super::pagination::{decode_cursor, encode_cursor, position_cursor};
use super::{ApiError, ContextExt, parse_id};
use crate::app::App;
use crate::bus::{Delta, Published, Topic};
use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::error::AppError;
use crate::storage::event_store::{self, Cursor, RecordedEvent, Scope};
use crate::storage::projections::users;

/// A piece of a reply being streamed. Join pieces by `offset` (characters before it).
#[derive(SimpleObject, Clone)]
pub struct MessageDelta {
    /// Resume `conversationEvents` after this piece.
    pub cursor: String,
    pub message_id: ID,
    /// Number of the (last) piece in its reply; a catch-up delta covers all before it.
    pub seq: u64,
    pub offset: u64,
    pub text: String,
}

#[derive(Union)]
pub enum ConversationEvent {
    Recorded(HistoryEvent),
    Delta(MessageDelta),
}

/// Where a subscriber is: after stored event `version`, and after piece `seq` of reply
/// `message` if it was receiving one.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Position {
    version: i64,
    delta: Option<(MessageId, u64)>,
}

impl Position {
    fn cursor(self) -> String {
        match self.delta {
            None => position_cursor(self.version),
            Some((message, seq)) => encode_cursor(&format!("{}|{message}|{seq}", self.version)),
        }
    }

    fn parse(cursor: &str) -> Result<Position, AppError> {
        let invalid = || AppError::bad_input("after", "is not a cursor from this server");
        let inner = decode_cursor(cursor)?;
        let mut parts = inner.split('|');
        let version = parts.next().and_then(|v| v.parse().ok()).filter(|v| *v >= 0).ok_or_else(invalid)?;
        let delta = match (parts.next(), parts.next(), parts.next()) {
            (None, _, _) => None,
            (Some(message), Some(seq), None) => {
                Some((MessageId::parse(message).map_err(|_| invalid())?, seq.parse().map_err(|_| invalid())?))
            }
            _ => return Err(invalid()),
        };
        Ok(Position { version, delta })
    }
}

/// Replies whose end this subscriber has seen, and where it is.
struct Subscriber {
    position: Position,
    ended: HashSet<MessageId>,
}

impl Subscriber {
    fn recorded(&mut self, event: &RecordedEvent) -> bool {
        if event.stream_version <= self.position.version {
            return false;
        }
        self.position = Position { version: event.stream_version, delta: self.position.delta };
        if matches!(
            event.event_type.as_str(),
            "AssistantMessageCompleted" | "AssistantMessageFailed" | "AssistantMessageCancelled"
        ) && let Some(id) = event.payload["message_id"].as_str().and_then(|id| MessageId::parse(id).ok())
        {
            self.ended.insert(id);
        }
        true
    }

    fn delta(&mut self, delta: &Delta) -> Option<MessageDelta> {
        if self.ended.contains(&delta.message_id) {
            return None;
        }
        if let Some((message, seq)) = self.position.delta
            && message == delta.message_id
            && delta.seq <= seq
        {
            return None;
        }
        self.position.delta = Some((delta.message_id, delta.seq));
        Some(MessageDelta {
            cursor: self.position.cursor(),
            message_id: ID(delta.message_id.to_string()),
            seq: delta.seq,
            offset: delta.offset as u64,
            text: delta.text.clone(),
        })
    }
}

/// A recorded event as subscribers see it. Boxed: a subscription waits far more than it
/// works, and should not hold a database query's worth of state while it waits.
fn history_event<'a>(
    app: &'a App,
    event: &'a RecordedEvent,
    cursor: String,
) -> BoxFuture<'a, Result<HistoryEvent, AppError>> {
    async move {
        let actor = match event.actor_id {
            Some(id) => users::find(&mut app.db.conn().await?, UserId::from_uuid(id.0)).await?.map(User::from),
            None => None,
        };
        Ok(HistoryEvent {
            cursor,
            conversation_id: ID(event.stream_id.0.to_string()),
            event_type: event.event_type.clone(),
            version: event.stream_version,
            actor,
            occurred_at: event.occurred_at(),
            data: async_graphql::Json(event.payload.clone()),
        })
    }
    .boxed()
}

/// A conversation's events after `version` (boxed, like [`history_event`]).
fn recorded_after(app: &App, id: ConversationId, version: i64) -> BoxFuture<'_, Result<Vec<RecordedEvent>, AppError>> {
    async move { Ok(event_store::load_stream_page(&mut app.db.conn().await?, id.uuid(), version, i64::MAX).await?) }
        .boxed()
}

const VIEWER_BATCH: i64 = 500;

/// The viewer's events after `cursor` (boxed, like [`history_event`]).
fn owned_after(app: &App, viewer: UserId, cursor: Cursor) -> BoxFuture<'_, Result<Vec<RecordedEvent>, AppError>> {
    let scope = Scope::ConversationsOf(viewer.uuid());
    async move { Ok(event_store::read_after(&mut app.db.conn().await?, scope, cursor, VIEWER_BATCH).await?) }.boxed()
}

fn lagged() -> async_graphql::Error {
    let mut error = async_graphql::Error::new("this subscriber fell behind; subscribe again from your last cursor");
    error.extensions.get_or_insert_with(Default::default).set("code", "LAGGED");
    error
}

#[derive(Default)]
pub struct LiveSubscription;

#[Subscription]
impl LiveSubscription {
    /// Everything that happens in a conversation: recorded events, and the pieces of a
    /// reply as it streams. With `after` (any event's cursor), starts right after it.
    async fn conversation_events(
        &self,
        ctx: &Context<'_>,
        conversation_id: ID,
        after: Option<String>,
    ) -> Result<impl Stream<Item = async_graphql::Result<ConversationEvent>> + use<>, ApiError> {
        let viewer = ctx.viewer()?.clone();
        let id = parse_id("conversationId", &conversation_id, ConversationId::parse)?;
        let position = after.as_deref().map(Position::parse).transpose()?.unwrap_or_default();
        let app = ctx.app().clone();
        readable(&mut app.db.conn().await?, &viewer, id).await?;
        Ok(events(app, id, position))
    }

    /// Changes to the viewer's conversations, for keeping a conversation list current on
    /// every device: each recorded event of every conversation they own. With `after`
    /// (a cursor this subscription gave), starts right after it; without, from now.
    async fn viewer_events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = async_graphql::Result<HistoryEvent>> + use<>, ApiError> {
        let viewer = ctx.viewer()?.user_id;
        let after = after
            .as_deref()
            .map(|cursor| {
                decode_cursor(cursor)
                    .ok()
                    .and_then(|inner| Cursor::parse(&inner))
                    .ok_or_else(|| AppError::bad_input("after", "is not a cursor from this server"))
            })
            .transpose()?;
        Ok(viewer_events(ctx.app().clone(), viewer, after))
    }
}

/// Sends the viewer's events from the log, in log order, after `after` (or from now).
/// The channel only says that something was committed: reading the log by cursor keeps
/// the order and the cursor safe, and nothing is sent twice or skipped.
fn viewer_events(
    app: Arc<App>,
    viewer: UserId,
    after: Option<Cursor>,
) -> impl Stream<Item = async_graphql::Result<HistoryEvent>> {
    async_stream::try_stream! {
        let mut live = app.bus.subscribe(Topic::Viewer(viewer));
        let mut cursor = match after {
            Some(cursor) => cursor,
            None => log_end(&app).await?,
        };
        // The newest event announced but not read yet.
        let mut announced = cursor;
        let mut patience = Duration::from_millis(10);
        loop {
            let batch = owned_after(&app, viewer, cursor).await?;
            for event in &batch {
                cursor = event.cursor();
                yield history_event(&app, event, encode_cursor(&cursor.encode())).await?;
            }
            if batch.len() as i64 == VIEWER_BATCH {
                continue;
            }
            if cursor < announced {
                // Announced but not readable yet: an older transaction is still running.
                tokio::time::sleep(patience).await;
                patience = (patience * 2).min(Duration::from_secs(1));
                continue;
            }
            patience = Duration::from_millis(10);
            match live.recv().await {
                Ok(Published::Event(event)) => announced = announced.max(event.cursor()),
                Ok(Published::Delta(_)) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => break,
            }
        }
    }
}

/// The cursor after the last event readable now.
fn log_end(app: &App) -> BoxFuture<'_, Result<Cursor, AppError>> {
    async move { Ok(event_store::end(&mut app.db.conn().await?).await?) }.boxed()
}

fn events(
    app: Arc<App>,
    id: ConversationId,
    position: Position,
) -> impl Stream<Item = async_graphql::Result<ConversationEvent>> {
    async_stream::try_stream! {
        let mut live = app.bus.subscribe(Topic::Conversation(id));
        let mut subscriber = Subscriber { position, ended: HashSet::new() };
        let stored = recorded_after(&app, id, position.version).await?;
        for event in &stored {
            if subscriber.recorded(event) {
                yield ConversationEvent::Recorded(history_event(&app, event, subscriber.position.cursor()).await?);
            }
        }
        if let Some(reply) = app.replies.get(id) {
            let after = match subscriber.position.delta {
                Some((message, seq)) if message == reply.message_id => seq,
                _ => 0,
            };
            if let Some(catch_up) = reply.catch_up(after)
                && let Some(delta) = subscriber.delta(&catch_up)
            {
                yield ConversationEvent::Delta(delta);
            }
        }
        loop {
            match live.recv().await {
                Ok(Published::Event(event)) => {
                    // Commands publish after they commit, so a later version can arrive
                    // first: read the gap from the log instead of skipping it.
                    let events = if event.stream_version > subscriber.position.version + 1 {
                        recorded_after(&app, id, subscriber.position.version).await?
                    } else {
                        vec![RecordedEvent::clone(&event)]
                    };
                    for event in &events {
                        if subscriber.recorded(event) {
                            yield ConversationEvent::Recorded(history_event(&app, event, subscriber.position.cursor()).await?);
                        }
                    }
                }
                Ok(Published::Delta(delta)) => {
                    if let Some(delta) = subscriber.delta(&delta) {
                        yield ConversationEvent::Delta(delta);
                    }
                }
                Err(RecvError::Lagged(_)) => Err(lagged())?,
                Err(RecvError::Closed) => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let message = MessageId::new();
        for position in [Position { version: 7, delta: None }, Position { version: 9, delta: Some((message, 12)) }] {
            assert_eq!(Position::parse(&position.cursor()).ok(), Some(position));
        }
        assert!(Position::parse(&encode_cursor("1|nope|2")).is_err());
        assert!(Position::parse(&encode_cursor("-1")).is_err());
    }

    #[test]
    fn deltas_are_sent_once_and_not_after_their_reply_ended() {
        let message = MessageId::new();
        let mut subscriber = Subscriber { position: Position::default(), ended: HashSet::new() };
        let delta = |seq| Delta { message_id: message, seq, offset: 0, text: "x".into() };
        assert!(subscriber.delta(&delta(1)).is_some());
        assert!(subscriber.delta(&delta(1)).is_none(), "duplicate");
        assert!(subscriber.delta(&delta(2)).is_some());
        subscriber.ended.insert(message);
        assert!(subscriber.delta(&delta(3)).is_none(), "after the end event");
    }
}
