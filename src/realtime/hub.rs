//! The hub: every connected device of every user, and fan-out to them.
//!
//! Each device has a bounded outbound queue. Fan-out never waits on a device: if its queue is full,
//! that device is a slow consumer and is told to disconnect (it resyncs on reconnect), so one stuck
//! client can never stall anyone else.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::{Notify, mpsc};

/// How many frames may wait for one device before it counts as a slow consumer.
pub const OUTBOUND_QUEUE: usize = 512;

/// What the writer of a socket sends next.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A JSON text frame.
    Text(Arc<str>),
    /// A close frame with this code and reason; nothing is sent after it.
    Close(u16, &'static str),
}

/// One connected device (a WebSocket of a signed-in session).
#[derive(Debug, Clone)]
pub struct Device {
    /// Unique per process.
    pub id: u64,
    /// The session it authenticated with.
    pub session_id: String,
    tx: mpsc::Sender<Outbound>,
    kick: Arc<Notify>,
}

impl Device {
    /// Queues a frame without waiting; a full queue kicks the device.
    pub fn push(&self, frame: &Arc<str>) -> bool {
        match self.tx.try_send(Outbound::Text(frame.clone())) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.kick.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }

    /// Queues a frame, waiting for room: only for the device's own session task (sync replay), which
    /// must not drop frames and may be slowed by its own client.
    pub async fn push_wait(&self, frame: Arc<str>) -> bool {
        self.tx.send(Outbound::Text(frame)).await.is_ok()
    }

    /// Queues a close frame after what is already queued.
    pub async fn close(&self, code: u16, reason: &'static str) {
        let _ = self.tx.send(Outbound::Close(code, reason)).await;
    }
}

/// What a registering device gets back: its handle, its queue, and the signal that kicks it.
#[derive(Debug)]
pub struct Registration {
    /// The device handle (also in the hub).
    pub device: Device,
    /// Frames to write to the socket.
    pub rx: mpsc::Receiver<Outbound>,
    /// Fires when the hub wants the device gone (slow consumer, session ended).
    pub kick: Arc<Notify>,
    /// True when this is the user's first device (the user just came online).
    pub first: bool,
}

/// The registry of connected devices.
#[derive(Debug, Default)]
pub struct Hub {
    users: DashMap<String, Vec<Device>>,
    next_id: AtomicU64,
}

impl Hub {
    /// Adds a device for `user_id`.
    pub fn register(&self, user_id: &str, session_id: &str) -> Registration {
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let kick = Arc::new(Notify::new());
        let device = Device {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            session_id: session_id.to_string(),
            tx,
            kick: kick.clone(),
        };
        let mut entry = self.users.entry(user_id.to_string()).or_default();
        let first = entry.is_empty();
        entry.push(device.clone());
        Registration {
            device,
            rx,
            kick,
            first,
        }
    }

    /// Removes a device; returns true when it was the user's last one (the user went offline).
    pub fn unregister(&self, user_id: &str, device_id: u64) -> bool {
        let mut last = false;
        self.users.remove_if_mut(user_id, |_, devices| {
            devices.retain(|d| d.id != device_id);
            last = devices.is_empty();
            last
        });
        last
    }

    /// Whether the user has a connected device.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.users.get(user_id).is_some_and(|d| !d.is_empty())
    }

    /// Sends a frame to every device of `user_id` except `except`; returns how many took it.
    pub fn send_to_user(&self, user_id: &str, frame: &Arc<str>, except: Option<u64>) -> usize {
        let Some(devices) = self.users.get(user_id) else {
            return 0;
        };
        devices
            .iter()
            .filter(|d| Some(d.id) != except)
            .filter(|d| d.push(frame))
            .count()
    }

    /// Sends a frame to the devices of one session of a user (a call follows the session that joined
    /// it across socket reconnects); returns how many took it.
    pub fn send_to_session(&self, user_id: &str, session_id: &str, frame: &Arc<str>) -> usize {
        let Some(devices) = self.users.get(user_id) else {
            return 0;
        };
        devices
            .iter()
            .filter(|d| d.session_id == session_id)
            .filter(|d| d.push(frame))
            .count()
    }

    /// Disconnects every device of a session (logout) or of a user (`session_id` None).
    pub fn kick(&self, user_id: &str, session_id: Option<&str>) {
        if let Some(devices) = self.users.get(user_id) {
            for d in devices
                .iter()
                .filter(|d| session_id.is_none_or(|s| d.session_id == s))
            {
                d.kick.notify_one();
            }
        }
    }
}

/// Serializes a frame once for fan-out to many devices.
pub fn frame(value: &serde_json::Value) -> Arc<str> {
    Arc::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_come_and_go_with_online_state() {
        let hub = Hub::default();
        let a = hub.register("u", "s1");
        let b = hub.register("u", "s2");
        assert!(a.first && !b.first);
        assert!(hub.is_online("u"));
        assert!(!hub.unregister("u", a.device.id), "one device left");
        assert!(hub.unregister("u", b.device.id), "last one gone");
        assert!(!hub.is_online("u"));
    }

    #[tokio::test]
    async fn fan_out_reaches_every_device_but_the_excluded_one() {
        let hub = Hub::default();
        let mut a = hub.register("u", "s1");
        let mut b = hub.register("u", "s2");
        let f = frame(&serde_json::json!({"type": "x"}));
        assert_eq!(hub.send_to_user("u", &f, Some(a.device.id)), 1);
        assert!(matches!(b.rx.recv().await, Some(Outbound::Text(t)) if &*t == r#"{"type":"x"}"#));
        assert!(a.rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_full_queue_kicks_only_that_device() {
        let hub = Hub::default();
        let slow = hub.register("u", "s1");
        let mut fast = hub.register("u", "s2");
        let f = frame(&serde_json::json!({"type": "x"}));
        for _ in 0..OUTBOUND_QUEUE {
            hub.send_to_user("u", &f, None);
            fast.rx.recv().await.expect("fast keeps up");
        }
        let kicked = slow.kick.notified();
        assert_eq!(
            hub.send_to_user("u", &f, None),
            1,
            "only the fast device took it"
        );
        tokio::time::timeout(std::time::Duration::from_secs(1), kicked)
            .await
            .expect("the slow device is kicked");
    }
}
