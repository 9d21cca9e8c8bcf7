//! Feeds: the rows and watermarks a relation publishes to the views that read it.
//!
//! Each subscriber has a bounded channel; publishing waits for room in every channel, so a
//! slow view slows its input down (back-pressure reaches the Kafka consumer) instead of rows
//! being dropped. A subscriber that went away is forgotten at the next publish.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::Message;

/// Messages in flight per subscriber.
const MESSAGES_IN_FLIGHT: usize = 16;

/// The subscribers of one relation.
#[derive(Debug, Default)]
pub struct Feed {
    subscribers: Mutex<Vec<mpsc::Sender<Message>>>,
}

impl Feed {
    fn subscribers(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::Sender<Message>>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new subscription; it receives every message published after this call.
    pub fn subscribe(&self) -> mpsc::Receiver<Message> {
        let (sender, receiver) = mpsc::channel(MESSAGES_IN_FLIGHT);
        self.subscribers().push(sender);
        receiver
    }

    /// The current subscribers, to publish to outside a lock the caller holds.
    pub fn recipients(&self) -> Recipients {
        Recipients(self.subscribers().clone())
    }

    /// Sends `message` to every subscriber, waiting for room.
    pub async fn publish(&self, message: Message) {
        self.recipients().send(message).await;
        self.subscribers().retain(|s| !s.is_closed());
    }
}

/// Subscribers as of one instant.
pub struct Recipients(Vec<mpsc::Sender<Message>>);

impl Recipients {
    pub async fn send(&self, message: Message) {
        for subscriber in &self.0 {
            // A closed channel means the view was dropped; nothing to deliver.
            let _ = subscriber.send(message.clone()).await;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The feeds of every relation, by name.
#[derive(Debug, Default)]
pub struct Feeds {
    feeds: Mutex<BTreeMap<String, Arc<Feed>>>,
}

impl Feeds {
    /// The feed of a relation, created on first use.
    pub fn get(&self, relation: &str) -> Arc<Feed> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(feeds.entry(relation.to_string()).or_default())
    }

    /// Forgets a dropped relation's feed (its subscribers see their channel close).
    pub fn remove(&self, relation: &str) {
        self.feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(relation);
    }
}
