//! Subscriptions: a conversation's events as they happen, replayed from a cursor first.
//!
//! `conversationEvents` subscribes to the conversation's channel before reading the log,
//! replays what was recorded after the cursor, catches up on the reply streaming on this
//! server (the text so far, as one delta), then relays live messages, skipping anything
//! already sent. So there is no gap and no duplicate however the two race.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, ID, SimpleObject, Subscription, Union};
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::sync::broadcast::error::RecvError;

use super::account::User;
use super::conversation::{HistoryEvent, readable};
use super::pagination::{decode_cursor, encode_cursor, position_cursor};
use super::{ApiError, ContextExt, parse_id};
use crate::app::App;
use crate::bus::{Delta, Published, Topic};
use crate::domain::ids::{ConversationId, MessageId, SessionId, UserId};
use crate::error::AppError;
use crate::limits::Slot;
use crate::storage::checkpoints;
use crate::storage::event_store::{self, Cursor, RecordedEvent, Scope};
use crate::storage::projections::users::{self, UserRow};
use crate::storage::projections::{access, conversations};

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

/// Where a subscriber is: after stored event `version`, and inside the reply it was
/// receiving, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Position {
    version: i64,
    delta: Option<Received>,
}

/// How much of a reply a subscriber has: its pieces up to `seq`, `chars` characters.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Received {
    message: MessageId,
    seq: u64,
    chars: u64,
}

impl Position {
    fn cursor(self) -> String {
        match self.delta {
            None => position_cursor(self.version),
            Some(Received { message, seq, chars }) => {
                encode_cursor(&format!("{}|{message}|{seq}|{chars}", self.version))
            }
        }
    }

    fn parse(cursor: &str) -> Result<Position, AppError> {
        let invalid = || AppError::bad_input("after", "is not a cursor from this server");
        let inner = decode_cursor(cursor)?;
        let parts: Vec<&str> = inner.split('|').collect();
        let version = parts[0].parse().ok().filter(|v| *v >= 0).ok_or_else(invalid)?;
        let delta = match parts[1..] {
            [] => None,
            [message, seq, chars] => Some(Received {
                message: MessageId::parse(message).map_err(|_| invalid())?,
                seq: seq.parse().map_err(|_| invalid())?,
                chars: chars.parse().map_err(|_| invalid())?,
            }),
            _ => return Err(invalid()),
        };
        Ok(Position { version, delta })
    }
}

/// What to do with a piece of a reply.
enum Next {
    Send(MessageDelta),
    /// Already sent, or its reply has ended.
    Skip,
    /// Pieces before it are missing.
    Gap,
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

    /// How much of reply `message` was sent: pieces and characters.
    fn received(&self, message: MessageId) -> (u64, u64) {
        match self.position.delta {
            Some(received) if received.message == message => (received.seq, received.chars),
            _ => (0, 0),
        }
    }

    fn delta(&mut self, delta: &Delta) -> Next {
        let (seq, chars) = self.received(delta.message_id);
        if self.ended.contains(&delta.message_id) || delta.seq <= seq {
            return Next::Skip;
        }
        if delta.offset as u64 != chars {
            return Next::Gap;
        }
        let chars = chars + delta.text.chars().count() as u64;
        self.position.delta = Some(Received { message: delta.message_id, seq: delta.seq, chars });
        Next::Send(MessageDelta {
            cursor: self.position.cursor(),
            message_id: ID(delta.message_id.to_string()),
            seq: delta.seq,
            offset: delta.offset as u64,
            text: delta.text.clone(),
        })
    }

    /// What a reply's text so far (`known`, a piece from its start) adds to what was sent
    /// of it.
    fn known(&mut self, known: &Delta) -> Option<MessageDelta> {
        let (_, chars) = self.received(known.message_id);
        let text: String = known.text.chars().skip(chars as usize).collect();
        if text.is_empty() {
            return None;
        }
        let delta = Delta { text, offset: chars as usize, ..known.clone() };
        match self.delta(&delta) {
            Next::Send(delta) => Some(delta),
            Next::Skip | Next::Gap => None,
        }
    }

    /// Sends what is known of the reply, then the waiting pieces that now follow on;
    /// keeps the ones that still do not.
    fn fill(&mut self, known: Option<&Delta>, waiting: &mut Vec<Arc<Delta>>) -> Vec<MessageDelta> {
        let mut sent: Vec<MessageDelta> = known.and_then(|k| self.known(k)).into_iter().collect();
        waiting.retain(|delta| match self.delta(delta) {
            Next::Send(delta) => {
                sent.push(delta);
                false
            }
            Next::Skip => false,
            Next::Gap => true,
        });
        sent
    }
}

/// A recorded event as subscribers see it, with its actor from `actors`.
fn history_event(event: &RecordedEvent, cursor: String, actors: &HashMap<UserId, UserRow>) -> HistoryEvent {
    HistoryEvent {
        cursor,
        conversation_id: ID(event.stream_id.0.to_string()),
        event_type: event.event_type.clone(),
        version: event.stream_version,
        actor: event.actor_id.and_then(|id| actors.get(&UserId::from_uuid(id.0))).cloned().map(User::from),
        occurred_at: event.occurred_at(),
        data: async_graphql::Json(event.payload.clone()),
    }
}

/// The users who caused `events`, in one query. Boxed: a subscription waits far more
/// than it works, and should not hold a database query's worth of state while it waits.
fn actors_of<'a>(
    app: &'a App,
    events: &'a [RecordedEvent],
) -> BoxFuture<'a, Result<HashMap<UserId, UserRow>, AppError>> {
    async move {
        let mut ids: Vec<UserId> = events.iter().filter_map(|e| e.actor_id).map(|id| UserId::from_uuid(id.0)).collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let found = users::find_many(&mut app.db.conn().await?, &ids).await?;
        Ok(found.into_iter().map(|user| (user.user_id(), user)).collect())
    }
    .boxed()
}

/// The text so far of the reply streaming in a conversation, as one piece from its
/// start: from memory if it streams here, else from its last checkpoint.
fn reply_so_far(app: &App, id: ConversationId) -> BoxFuture<'_, Result<Option<Delta>, AppError>> {
    async move {
        if let Some(reply) = app.replies.get(id) {
            return Ok(reply.catch_up(0));
        }
        let checkpoint = checkpoints::of_conversation(&mut app.db.conn().await?, id).await?;
        Ok(checkpoint.map(|c| Delta { message_id: c.message(), seq: c.pieces as u64, offset: 0, text: c.text }))
    }
    .boxed()
}

/// Stored events a catch-up reads at a time.
const REPLAY_PAGE: i64 = 200;

/// What a subscriber missed: the next page of stored events after its position, and
/// after the last page the text so far of the reply streaming, if any. Says whether
/// it got to the end.
fn catch_up<'a>(
    app: &'a App,
    id: ConversationId,
    subscriber: &'a mut Subscriber,
) -> BoxFuture<'a, Result<(Vec<ConversationEvent>, bool), AppError>> {
    async move {
        // Read before the log: a checkpoint is saved with the event that starts its reply.
        let so_far = reply_so_far(app, id).await?;
        let page = event_store::load_stream_page(
            &mut app.db.conn().await?,
            id.uuid(),
            subscriber.position.version,
            REPLAY_PAGE,
        )
        .await?;
        let actors = actors_of(app, &page).await?;
        let mut missed = vec![];
        for event in &page {
            if subscriber.recorded(event) {
                missed.push(ConversationEvent::Recorded(history_event(event, subscriber.position.cursor(), &actors)));
            }
        }
        if page.len() as i64 == REPLAY_PAGE {
            return Ok((missed, false));
        }
        missed.extend(so_far.and_then(|known| subscriber.known(&known)).map(ConversationEvent::Delta));
        Ok((missed, true))
    }
    .boxed()
}

const VIEWER_BATCH: i64 = 500;

/// The viewer's events after `cursor` (boxed, like [`actors_of`]).
fn owned_after(app: &App, viewer: UserId, cursor: Cursor) -> BoxFuture<'_, Result<Vec<RecordedEvent>, AppError>> {
    let scope = Scope::Viewer(viewer);
    async move { Ok(event_store::read_after(&mut app.db.conn().await?, scope, cursor, VIEWER_BATCH).await?) }.boxed()
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
        // Boxed: this future's space stays in the subscription's allocation for as long
        // as the subscription lives.
        async { readable(&mut app.db.conn().await?, &viewer, id).await }.boxed().await?;
        let slot = ctx.subscription_slot()?;
        Ok(holding(slot, events(app, viewer.user_id, viewer.session_id, id, position)))
    }

    /// Changes to the viewer's conversations, for keeping a conversation list current on
    /// every device: each recorded event of every conversation they own. With `after`
    /// (a cursor this subscription gave), starts right after it; without, from now.
    async fn viewer_events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
    ) -> Result<impl Stream<Item = async_graphql::Result<HistoryEvent>> + use<>, ApiError> {
        let viewer = ctx.viewer()?;
        let (user, session) = (viewer.user_id, viewer.session_id);
        let after = after
            .as_deref()
            .map(|cursor| {
                decode_cursor(cursor)
                    .ok()
                    .and_then(|inner| Cursor::parse(&inner))
                    .ok_or_else(|| AppError::bad_input("after", "is not a cursor from this server"))
            })
            .transpose()?;
        let slot = ctx.subscription_slot()?;
        Ok(holding(slot, viewer_events(ctx.app().clone(), user, session, after)))
    }
}

/// `stream`, keeping `slot` taken for as long as it lives.
fn holding<T>(slot: Option<Slot<()>>, stream: impl Stream<Item = T>) -> impl Stream<Item = T> {
    stream.map(move |item| {
        let _held = &slot;
        item
    })
}

/// Sends the viewer's events from the log, in log order, after `after` (or from now).
/// The channel only says that something was committed: reading the log by cursor keeps
/// the order and the cursor safe, and nothing is sent twice or missed. (From now, what
/// had committed before is skipped; resuming from a cursor this gave may still send it.)
fn viewer_events(
    app: Arc<App>,
    viewer: UserId,
    session: SessionId,
    after: Option<Cursor>,
) -> impl Stream<Item = async_graphql::Result<HistoryEvent>> {
    async_stream::try_stream! {
        let mut session_over = std::pin::pin!(ends(app.sessions.watch(session)));
        let mut live = app.bus.subscribe(Topic::Viewer(viewer));
        let (mut cursor, mut committed_before) = match after {
            Some(cursor) => (cursor, HashSet::new()),
            None => {
                let now = log_now(&app).await?;
                (now.cursor, now.committed)
            }
        };
        // The newest event announced but not read yet.
        let mut announced = cursor;
        let mut patience = Duration::from_millis(10);
        loop {
            // In a block, so the batch is not kept while waiting.
            let full = {
                let batch = owned_after(&app, viewer, cursor).await?;
                let actors = actors_of(&app, &batch).await?;
                for event in &batch {
                    cursor = event.cursor();
                    if !committed_before.contains(&event.tx_id) {
                        yield history_event(event, encode_cursor(&cursor.encode()), &actors);
                    }
                }
                committed_before.retain(|tx| *tx >= cursor.tx_id);
                batch.len() as i64 == VIEWER_BATCH
            };
            if full {
                continue;
            }
            if cursor < announced {
                // Announced but not readable yet: an older transaction is still running.
                tokio::time::sleep(patience).await;
                patience = (patience * 2).min(Duration::from_secs(1));
                continue;
            }
            patience = Duration::from_millis(10);
            let wake = tokio::select! {
                biased;
                () = &mut session_over => Wake::SessionEnded,
                received = live.recv() => Wake::Live(received),
            };
            match wake {
                Wake::Live(Ok(Published::Event(event))) => announced = announced.max(event.cursor()),
                Wake::Live(Ok(Published::Delta(_) | Published::AccessChanged) | Err(RecvError::Lagged(_))) | Wake::Refill => {}
                Wake::Live(Err(RecvError::Closed)) => break,
                Wake::SessionEnded => Err(session_ended())?,
            }
        }
    }
}

fn log_now(app: &App) -> BoxFuture<'_, Result<event_store::Now, AppError>> {
    async move { Ok(event_store::now(&mut app.db.conn().await?).await?) }.boxed()
}

/// How often a subscriber missing pieces of a reply streaming on another server looks for
/// a newer checkpoint.
const REFILL_EVERY: Duration = Duration::from_millis(200);

enum Wake {
    Live(Result<Published, RecvError>),
    Refill,
    SessionEnded,
}

/// Resolves when the session ends, or the server stops. Made once per subscription:
/// waiting anew for every message would cost more than the message.
async fn ends(mut ended: tokio::sync::watch::Receiver<bool>) {
    let _ = ended.changed().await;
}

/// Whether `viewer` may still read the conversation (boxed, like [`actors_of`]).
fn still_readable(app: &App, id: ConversationId, viewer: UserId) -> BoxFuture<'_, Result<bool, AppError>> {
    async move {
        let mut conn = app.db.conn().await?;
        let Some(row) = conversations::find(&mut conn, id).await? else { return Ok(false) };
        Ok(access::role_of(&mut conn, id, row.owner(), viewer).await?.is_some())
    }
    .boxed()
}

/// The error that ends a subscription to a conversation the viewer may no longer read.
fn shut_out() -> async_graphql::Error {
    let mut error = async_graphql::Error::new("conversation not found");
    error.extensions.get_or_insert_with(Default::default).set("code", "NOT_FOUND");
    error
}

fn session_ended() -> async_graphql::Error {
    let mut error = async_graphql::Error::new("your session has ended; sign in again");
    error.extensions.get_or_insert_with(Default::default).set("code", "UNAUTHENTICATED");
    error
}

/// A conversation's events after `position`: what the log and the reply's text hold, then
/// live. A subscriber that falls behind the channel is caught up the same way, so a slow
/// one never holds the others back and never misses anything.
fn events(
    app: Arc<App>,
    viewer: UserId,
    session: SessionId,
    id: ConversationId,
    position: Position,
) -> impl Stream<Item = async_graphql::Result<ConversationEvent>> {
    async_stream::try_stream! {
        let mut session_over = std::pin::pin!(ends(app.sessions.watch(session)));
        let mut live = app.bus.subscribe(Topic::Conversation(id));
        let mut subscriber = Subscriber { position, ended: HashSet::new() };
        // Pieces that came before the text known of their reply caught up with what this
        // subscriber has (a reply streaming on another server, saved once a second).
        let mut waiting: Vec<Arc<Delta>> = vec![];
        let mut refill_at = tokio::time::Instant::now();
        let mut behind = true;
        loop {
            while behind {
                let (missed, complete) = catch_up(&app, id, &mut subscriber).await?;
                behind = !complete;
                for event in missed {
                    yield event;
                }
            }
            let wake = if waiting.is_empty() {
                tokio::select! {
                    biased;
                    () = &mut session_over => Wake::SessionEnded,
                    received = live.recv() => Wake::Live(received),
                }
            } else {
                tokio::select! {
                    biased;
                    () = &mut session_over => Wake::SessionEnded,
                    received = live.recv() => Wake::Live(received),
                    () = tokio::time::sleep_until(refill_at) => Wake::Refill,
                }
            };
            let refill = match wake {
                Wake::Live(Ok(Published::AccessChanged)) => {
                    if !still_readable(&app, id, viewer).await? {
                        Err(shut_out())?;
                    }
                    false
                }
                Wake::Live(Ok(Published::Event(event))) => {
                    if matches!(event.event_type.as_str(), "AccessRevoked" | "MemberLeft")
                        && !still_readable(&app, id, viewer).await?
                    {
                        Err(shut_out())?;
                    }
                    if event.stream_version > subscriber.position.version + 1 {
                        // Commands publish after they commit, so a later version can arrive
                        // first: read the gap from the log instead of skipping it.
                        behind = true;
                    } else if subscriber.recorded(&event) {
                        let actors = actors_of(&app, std::slice::from_ref(&*event)).await?;
                        yield ConversationEvent::Recorded(history_event(&event, subscriber.position.cursor(), &actors));
                    }
                    waiting.retain(|delta| !subscriber.ended.contains(&delta.message_id));
                    false
                }
                Wake::Live(Ok(Published::Delta(delta))) => match subscriber.delta(&delta) {
                    Next::Send(delta) => {
                        yield ConversationEvent::Delta(delta);
                        false
                    }
                    Next::Skip => false,
                    Next::Gap => {
                        waiting.push(delta);
                        waiting.len() == 1
                    }
                },
                Wake::Refill => true,
                Wake::SessionEnded => Err(session_ended())?,
                Wake::Live(Err(RecvError::Lagged(_))) => {
                    behind = true;
                    false
                }
                Wake::Live(Err(RecvError::Closed)) => break,
            };
            if refill {
                refill_at = tokio::time::Instant::now() + REFILL_EVERY;
                let known = reply_so_far(&app, id).await?;
                for delta in subscriber.fill(known.as_ref(), &mut waiting) {
                    yield ConversationEvent::Delta(delta);
                }
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
        let received = Received { message, seq: 12, chars: 40 };
        for position in [Position { version: 7, delta: None }, Position { version: 9, delta: Some(received) }] {
            assert_eq!(Position::parse(&position.cursor()).ok(), Some(position));
        }
        assert!(Position::parse(&encode_cursor("1|nope|2|3")).is_err());
        assert!(Position::parse(&encode_cursor(&format!("1|{message}|2"))).is_err());
        assert!(Position::parse(&encode_cursor("-1")).is_err());
    }

    fn sent(next: Next) -> Option<String> {
        match next {
            Next::Send(delta) => Some(delta.text),
            Next::Skip | Next::Gap => None,
        }
    }

    #[test]
    fn deltas_are_sent_once_in_order_and_not_after_their_reply_ended() {
        let message = MessageId::new();
        let mut subscriber = Subscriber { position: Position::default(), ended: HashSet::new() };
        let delta = |seq, offset| Delta { message_id: message, seq, offset, text: "x".into() };
        assert!(sent(subscriber.delta(&delta(1, 0))).is_some());
        assert!(matches!(subscriber.delta(&delta(1, 0)), Next::Skip), "duplicate");
        assert!(matches!(subscriber.delta(&delta(3, 2)), Next::Gap), "piece 2 is missing");
        assert!(sent(subscriber.delta(&delta(2, 1))).is_some());
        subscriber.ended.insert(message);
        assert!(matches!(subscriber.delta(&delta(3, 2)), Next::Skip), "after the end event");
    }

    #[test]
    fn the_text_known_fills_the_gap_before_waiting_pieces() {
        let message = MessageId::new();
        let mut subscriber = Subscriber { position: Position::default(), ended: HashSet::new() };
        let piece = |seq, offset, text: &str| Arc::new(Delta { message_id: message, seq, offset, text: text.into() });
        let mut waiting = vec![piece(4, 6, "de"), piece(5, 8, "f")];
        let known = |seq, text: &str| Delta { message_id: message, seq, offset: 0, text: text.into() };
        assert!(subscriber.fill(Some(&known(2, "abc")), &mut waiting).len() == 1, "only the text known");
        assert_eq!(waiting.len(), 2, "piece 3 is still missing");
        let sent = subscriber.fill(Some(&known(4, "abcabcde")), &mut waiting);
        let texts: Vec<&str> = sent.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["abcde", "f"]);
        assert!(waiting.is_empty());
        assert_eq!(subscriber.received(message), (5, 9));
    }
}

#[cfg(test)]
mod size {
    use super::*;

    #[tokio::test]
    async fn a_waiting_subscription_is_small() {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("size.db").display());
        let config =
            crate::config::Config::from_lookup(|key| (key == "DATABASE_URL").then(|| url.clone())).expect("config");
        let served = App::start(config).await.expect("app");
        // What a subscription holds while it waits, times the thousands that wait.
        let stream =
            events(served.app.clone(), UserId::new(), SessionId::new(), ConversationId::new(), Position::default());
        assert!(std::mem::size_of_val(&stream) <= 1_312, "{} bytes", std::mem::size_of_val(&stream));
        let stream = viewer_events(served.app.clone(), UserId::new(), SessionId::new(), None);
        assert!(std::mem::size_of_val(&stream) <= 1_024, "{} bytes", std::mem::size_of_val(&stream));
    }
}
