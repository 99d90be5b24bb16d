//! Relaying the bus between server instances that share a PostgreSQL database, through
//! LISTEN/NOTIFY, so a device connected to one instance sees what happens on another.
//!
//! Outgoing messages are batched into notifications of at most [`MAX_PAYLOAD`] bytes.
//! A committed event travels as its stream and version (receivers read it from the log);
//! a reply's piece travels whole, but only while another instance is there to hear it:
//! each instance says hello every [`HELLO_EVERY`]. Each ignores its own notifications.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::app::App;
use crate::bus::{Delta, Published, Topic};
use crate::domain::ids::{ConversationId, MessageId, SessionId};
use crate::storage::event_store;
use crate::storage::projections::access;

const CHANNEL: &str = "liteskill_bus";
/// PostgreSQL refuses notification payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7_000;

/// A bus message as it crosses to other instances.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k")]
pub enum Relayed {
    /// A committed event, by its stream and version.
    Event {
        stream: uuid::Uuid,
        version: i64,
    },
    Delta {
        conversation: ConversationId,
        message: MessageId,
        seq: u64,
        offset: usize,
        text: String,
    },
    SessionEnded {
        session: SessionId,
    },
    /// This instance is listening.
    Hello,
}

/// How often an instance tells the others it is there.
const HELLO_EVERY: Duration = Duration::from_secs(5);

/// The way to the other instances.
pub struct Relay {
    sender: mpsc::Sender<Relayed>,
    /// When another instance was last heard from (milliseconds since the epoch).
    peer_heard_at: Arc<AtomicI64>,
}

impl Relay {
    /// Sends a message on; false if the relay is too far behind to take it.
    pub fn send(&self, message: Relayed) -> bool {
        self.sender.try_send(message).is_ok()
    }

    /// Whether another instance has been heard from lately.
    pub fn has_peers(&self) -> bool {
        let quiet_for = chrono::Utc::now().timestamp_millis() - AtomicI64::load(&self.peer_heard_at, Ordering::Relaxed);
        quiet_for < 3 * HELLO_EVERY.as_millis() as i64
    }
}

#[derive(Serialize, Deserialize)]
struct Notification {
    from: u64,
    messages: Vec<Relayed>,
}

/// Starts relaying: returns what the bus hands outgoing messages to.
pub fn start(app: &Arc<App>, url: String) -> Relay {
    let instance = rand::random::<u64>();
    let (sender, receiver) = mpsc::channel(16_384);
    let peer_heard_at = Arc::new(AtomicI64::new(i64::MIN / 2));
    tokio::spawn(send(url.clone(), instance, receiver));
    tokio::spawn(receive(Arc::downgrade(app), url, instance, peer_heard_at.clone()));
    tokio::spawn(say_hello(sender.downgrade()));
    Relay { sender, peer_heard_at }
}

/// Says hello to the other instances now and then, until the application ends.
async fn say_hello(sender: mpsc::WeakSender<Relayed>) {
    let mut every = tokio::time::interval(HELLO_EVERY);
    loop {
        every.tick().await;
        let Some(sender) = sender.upgrade() else { return };
        let _ = sender.try_send(Relayed::Hello);
    }
}

/// Sends what this instance publishes, batched, until the application ends.
async fn send(url: String, instance: u64, mut outgoing: mpsc::Receiver<Relayed>) {
    let mut conn: Option<AsyncPgConnection> = None;
    while let Some(first) = outgoing.recv().await {
        let mut messages = vec![first];
        while let Ok(next) = outgoing.try_recv() {
            messages.push(next);
        }
        for payload in payloads(instance, messages) {
            if conn.is_none() {
                conn = AsyncPgConnection::establish(&url).await.ok();
            }
            let Some(c) = conn.as_mut() else {
                tracing::warn!("cannot reach PostgreSQL to relay to other instances");
                continue;
            };
            let notified = diesel::sql_query("SELECT pg_notify($1, $2)")
                .bind::<Text, _>(CHANNEL)
                .bind::<Text, _>(payload)
                .execute(c)
                .await;
            if let Err(error) = notified {
                tracing::warn!(%error, "relaying to other instances failed");
                conn = None;
            }
        }
    }
}

/// Notification payloads for `messages`, each under the size limit.
fn payloads(instance: u64, messages: Vec<Relayed>) -> Vec<String> {
    let mut payloads = vec![];
    let mut batch: Vec<Relayed> = vec![];
    let mut size = 0;
    for message in messages {
        let length = serde_json::to_string(&message).map_or(0, |m| m.len());
        if length + 64 > MAX_PAYLOAD {
            tracing::warn!("a message too large to relay was dropped");
            continue;
        }
        if size + length + 64 > MAX_PAYLOAD && !batch.is_empty() {
            payloads
                .extend(serde_json::to_string(&Notification { from: instance, messages: std::mem::take(&mut batch) }));
            size = 0;
        }
        size += length + 1;
        batch.push(message);
    }
    if !batch.is_empty() {
        payloads.extend(serde_json::to_string(&Notification { from: instance, messages: batch }));
    }
    payloads
}

/// Publishes other instances' messages here, reconnecting as needed, until the
/// application ends.
async fn receive(app: Weak<App>, url: String, instance: u64, peer_heard_at: Arc<AtomicI64>) {
    loop {
        if app.strong_count() == 0 {
            return;
        }
        if let Err(error) = listen(&app, &url, instance, &peer_heard_at).await {
            tracing::warn!(%error, "listening to other instances failed; retrying");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen(app: &Weak<App>, url: &str, instance: u64, peer_heard_at: &AtomicI64) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(url).await?;
    conn.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Listening now: tell the others at once, so they relay replies' pieces here.
    let hello = serde_json::to_string(&Notification { from: instance, messages: vec![Relayed::Hello] })?;
    diesel::sql_query("SELECT pg_notify($1, $2)")
        .bind::<Text, _>(CHANNEL)
        .bind::<Text, _>(hello)
        .execute(&mut conn)
        .await?;
    let mut notifications = std::pin::pin!(conn.notifications_stream());
    while let Some(notification) = notifications.next().await {
        let notification = notification?;
        let Ok(Notification { from, messages }) = serde_json::from_str(&notification.payload) else { continue };
        let Some(app) = app.upgrade() else { return Ok(()) };
        if from != instance {
            peer_heard_at.store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
            publish_here(&app, messages).await;
        }
    }
    anyhow::bail!("the notification stream ended")
}

async fn publish_here(app: &App, messages: Vec<Relayed>) {
    for message in messages {
        match message {
            Relayed::Event { stream, version } => {
                let loaded = async {
                    let mut conn = app.db.conn().await?;
                    let events = event_store::load_stream_page(&mut conn, stream, version - 1, 1).await?;
                    let audience = access::audience(&mut conn, &events).await?;
                    Ok::<_, crate::storage::StoreError>((audience, events))
                };
                match loaded.await {
                    Ok((audience, events)) => app.bus.publish_events_here(&audience, events),
                    Err(error) => tracing::warn!(%error, "could not read a relayed event"),
                }
            }
            Relayed::Delta { conversation, message, seq, offset, text } => {
                let delta = Delta { message_id: message, seq, offset, text };
                app.bus.publish_here(Topic::Conversation(conversation), Published::Delta(Arc::new(delta)));
            }
            Relayed::SessionEnded { session } => app.sessions.end(session),
            Relayed::Hello => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_under_the_limit() {
        let delta = |n: u64| Relayed::Delta {
            conversation: ConversationId::new(),
            message: MessageId::new(),
            seq: n,
            offset: 0,
            text: "x".repeat(500),
        };
        let payloads = payloads(7, (0..100).map(delta).collect());
        assert!(payloads.len() > 1);
        assert!(payloads.iter().all(|p| p.len() < MAX_PAYLOAD));
        let relayed: usize = payloads
            .iter()
            .map(|p| serde_json::from_str::<Notification>(p).map(|n| n.messages.len()).unwrap_or(0))
            .sum();
        assert_eq!(relayed, 100);
    }
}
