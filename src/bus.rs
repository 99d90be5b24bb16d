//! Fan-out of committed events and live reply text, one channel per conversation.
//!
//! Channels are bounded: a subscriber that falls too far behind is told it lagged (and
//! resumes from its cursor) instead of slowing the reply or the other subscribers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::domain::ids::{ConversationId, MessageId};
use crate::storage::event_store::RecordedEvent;

/// Messages a conversation's channel holds for its slowest subscriber.
const CAPACITY: usize = 4096;

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

#[derive(Default)]
pub struct Bus {
    channels: Mutex<HashMap<ConversationId, broadcast::Sender<Published>>>,
}

impl Bus {
    pub fn subscribe(&self, conversation: ConversationId) -> broadcast::Receiver<Published> {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        channels.entry(conversation).or_insert_with(|| broadcast::channel(CAPACITY).0).subscribe()
    }

    pub fn publish(&self, conversation: ConversationId, message: Published) {
        let mut channels = self.channels.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = channels.get(&conversation)
            && sender.send(message).is_err()
        {
            // Nobody listens any more.
            channels.remove(&conversation);
        }
    }

    /// Publishes committed events, each on its stream's channel.
    pub fn publish_events(&self, events: Vec<RecordedEvent>) {
        for event in events {
            let conversation = ConversationId::from_uuid(event.stream_id.0);
            self.publish(conversation, Published::Event(Arc::new(event)));
        }
    }
}
