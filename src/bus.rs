//! Fan-out of committed events and live reply text: a channel per conversation, and one
//! per user for the changes to their conversation list.
//!
//! Channels are bounded: a subscriber that falls too far behind is told it lagged (and
//! resumes from its cursor) instead of slowing the reply or the other subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::storage::event_store::RecordedEvent;

/// Messages a channel holds for its slowest subscriber: at 20 tokens a second, half a
/// minute of a reply. A subscriber further behind is told and resumes from its cursor.
const CAPACITY: usize = 600;

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

    pub fn publish(&self, topic: Topic, message: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = channels.get(&topic)
            && sender.send(message).is_err()
        {
            // Nobody listens any more.
            channels.remove(&topic);
        }
    }

    /// Publishes a conversation's committed events to its channel and its owner's.
    pub fn publish_events(&self, owner: UserId, events: Vec<RecordedEvent>) {
        for event in events {
            let event = Arc::new(event);
            let conversation = ConversationId::from_uuid(event.stream_id.0);
            self.publish(Topic::Conversation(conversation), Published::Event(event.clone()));
            self.publish(Topic::Viewer(owner), Published::Event(event));
        }
    }
}
