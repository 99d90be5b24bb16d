//! Fan-out of committed events and live reply text: a channel per conversation, and one
//! per user for the changes to their conversation list.
//!
//! Channels are bounded: a subscriber that falls too far behind loses its place in the
//! channel and catches up from the log and the reply's text, instead of slowing the
//! reply or the other subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::broadcast;

use crate::domain::ids::{ConversationId, MessageId, SessionId, UserId};
use crate::relay::{Relay, Relayed};
use crate::storage::event_store::RecordedEvent;

/// Messages a channel holds for its slowest subscriber: three seconds of a reply at 20
/// tokens a second. Small, because every watched conversation has a channel, and a
/// subscriber further behind catches up from the log at the cost of a query.
const CAPACITY: usize = 64;

/// A piece of a reply being streamed.
#[derive(Debug, Clone, PartialEq)]
pub struct Delta {
    pub message_id: MessageId,
    /// 1-based number of this piece in its reply.
    pub seq: u64,
    /// Characters of the reply before this piece.
    pub offset: usize,
    pub text: String,
}

#[derive(Debug, Clone)]
pub enum Published {
    Event(Arc<RecordedEvent>),
    Delta(Arc<Delta>),
    /// Someone may have lost access to the conversation (a group of theirs was changed):
    /// its subscribers check theirs again.
    AccessChanged,
}

/// Who hears of a batch of events: the users whose conversation lists they change, and
/// the conversations whose subscribers must check their access again.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Audience {
    pub viewers: Vec<UserId>,
    pub access_changed: Vec<ConversationId>,
}

/// What a channel is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Conversation(ConversationId),
    /// Everything that changes this user's list of conversations.
    Viewer(UserId),
}

#[derive(Default)]
pub struct Bus {
    channels: Mutex<HashMap<Topic, broadcast::Sender<Published>>>,
    /// Where messages go to reach other instances (PostgreSQL only).
    relay: OnceLock<Relay>,
}

impl Bus {
    pub fn subscribe(&self, topic: Topic) -> broadcast::Receiver<Published> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Channels nobody listens to any more go now and then, not only when published to.
        if channels.len() >= 1024 && channels.len().is_power_of_two() {
            channels.retain(|_, sender| sender.receiver_count() > 0);
        }
        channels.entry(topic).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe()
    }

    /// Sends messages on to other instances from now on.
    pub fn relay_to(&self, relay: Relay) {
        let _ = self.relay.set(relay);
    }

    fn relay(&self, message: Relayed) {
        if let Some(relay) = self.relay.get()
            && !relay.send(message)
        {
            tracing::warn!("the relay to other instances is falling behind; a message was dropped");
        }
    }

    /// Tells other instances a session ended.
    pub fn relay_session_end(&self, session: SessionId) {
        self.relay(Relayed::SessionEnded { session });
    }

    /// Publishes a reply's piece here and on other instances.
    pub fn publish_delta(&self, conversation: ConversationId, delta: Delta) {
        // The bulk of the traffic: not sent when no other instance listens.
        if self.relay.get().is_some_and(Relay::has_peers) {
            self.relay(Relayed::Delta {
                conversation,
                message: delta.message_id,
                seq: delta.seq,
                offset: delta.offset,
                text: delta.text.clone(),
            });
        }
        self.publish_here(Topic::Conversation(conversation), Published::Delta(Arc::new(delta)));
    }

    /// Publishes on this instance only.
    pub fn publish_here(&self, topic: Topic, message: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = channels.get(&topic)
            && sender.send(message).is_err()
        {
            // Nobody listens any more.
            channels.remove(&topic);
        }
    }

    /// Publishes committed events to their stream's channel and their audience's, here
    /// and on other instances (which work out the audience themselves).
    pub fn publish_events(&self, audience: &Audience, events: Vec<RecordedEvent>) {
        for event in &events {
            self.relay(Relayed::Event { stream: event.stream_id.0, version: event.stream_version });
        }
        self.publish_events_here(audience, events);
    }

    /// [`Bus::publish_events`] on this instance only.
    pub fn publish_events_here(&self, audience: &Audience, events: Vec<RecordedEvent>) {
        for event in events {
            let event = Arc::new(event);
            let conversation = ConversationId::from_uuid(event.stream_id.0);
            self.publish_here(Topic::Conversation(conversation), Published::Event(event.clone()));
            for viewer in &audience.viewers {
                self.publish_here(Topic::Viewer(*viewer), Published::Event(event.clone()));
            }
        }
        for conversation in &audience.access_changed {
            self.publish_here(Topic::Conversation(*conversation), Published::AccessChanged);
        }
    }
}
