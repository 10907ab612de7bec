//! A device's bounded outgoing queue: many senders (the fan-out of every send, receipts,
//! presence, typing), one receiver (the device's session, which writes it to the socket).
//!
//! Most connections are idle most of the time, so what an idle queue holds decides much of
//! a connection's memory. tokio's bounded channel allocates its first block of 32 slots
//! when it is made (about 2 KiB for a frame of 48 bytes, with the channel's own state):
//! a quarter of an idle connection. This queue holds nothing until a frame comes, grows
//! with what is queued, and gives back what a burst grew once it is drained.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Slots an empty queue takes when a frame comes.
const FIRST_SLOTS: usize = 16;

/// Why a frame was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused<T> {
    /// The queue holds its capacity already.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver: a frame came, or the last sender left.
    arrived: Notify,
    /// Wakes a sender waiting for room: the receiver took frames, or left.
    room: Notify,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
}

/// A sending side; clones share the queue. Once every sender is dropped the receiver
/// sees the end after the queued frames.
pub struct Sender<T> {
    shared: Arc<Shared<T>>,
}

/// The receiving side.
pub struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

/// A queue holding at most `capacity` frames (at least one).
pub fn queue<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
        }),
        arrived: Notify::new(),
        room: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

impl<T> Sender<T> {
    /// Queues `item` without waiting.
    pub fn try_send(&self, item: T) -> Result<(), Refused<T>> {
        let mut st = self.shared.state.lock();
        if !st.receiver {
            return Err(Refused::Closed(item));
        }
        if st.items.len() >= self.shared.capacity {
            return Err(Refused::Full(item));
        }
        if st.items.capacity() == 0 {
            // One allocation for a usual burst, not one per doubling from four.
            st.items.reserve(FIRST_SLOTS);
        }
        st.items.push_back(item);
        drop(st);
        self.shared.arrived.notify_one();
        Ok(())
    }

    /// Queues `item`, waiting for room; gives it back if the receiver is gone.
    pub async fn send(&self, mut item: T) -> Result<(), T> {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            // Interest first, then the check: room made between the two is not missed.
            room.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed(back)) => return Err(back),
                Err(Refused::Full(back)) => item = back,
            }
            room.await;
        }
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.state.lock().senders += 1;
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.state.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.arrived.notify_one();
        }
    }
}

impl<T> Receiver<T> {
    /// The next frame, waiting for one; `None` once every sender is gone and the queue
    /// is drained.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            match self.take() {
                Ok(item) => return Some(item),
                Err(true) => return None,
                // `notify_one` keeps a permit when nobody waits, so a frame queued between
                // the check and this wait wakes it at once.
                Err(false) => self.shared.arrived.notified().await,
            }
        }
    }

    /// The next frame if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        self.take().ok()
    }

    /// A frame, or whether the queue has ended (`true`) or is only empty (`false`).
    fn take(&mut self) -> Result<T, bool> {
        let mut st = self.shared.state.lock();
        // A sender waits only after finding the queue full, so only the take that frees
        // a full queue's first slot has anyone to wake (waking takes the waiters' lock:
        // not something to do for every frame).
        let was_full = st.items.len() >= self.shared.capacity;
        match st.items.pop_front() {
            Some(item) => {
                if st.items.is_empty() {
                    // A drained queue holds nothing: a device that got a frame a minute
                    // ago is as cheap as one that never did (one allocation per burst).
                    st.items = VecDeque::new();
                }
                drop(st);
                if was_full {
                    self.shared.room.notify_waiters();
                }
                Ok(item)
            }
            None => Err(st.senders == 0),
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut st = self.shared.state.lock();
        st.receiver = false;
        // Frames nobody will write go now, not with the last sender.
        st.items = VecDeque::new();
        drop(st);
        self.shared.room.notify_waiters();
    }
}

/// The queue's state is behind one lock; both sides may move between threads.
const _: fn() = || {
    fn send_sync<X: Send + Sync>() {}
    send_sync::<Sender<crate::hub::Outbound>>();
    send_sync::<Receiver<crate::hub::Outbound>>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn frames_come_out_in_order_and_the_end_after_them() {
        let (tx, mut rx) = queue::<u32>(8);
        let tx2 = tx.clone();
        for i in 0..5 {
            tx.try_send(i).unwrap();
        }
        tx2.send(5).await.unwrap();
        drop(tx);
        drop(tx2);
        let mut got = Vec::new();
        while let Some(i) = rx.recv().await {
            got.push(i);
        }
        assert_eq!(got, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(rx.try_recv(), None);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_without_waiting_and_send_waits_for_room() {
        let (tx, mut rx) = queue::<u32>(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(Refused::Full(3)));
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(3).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "send waits while the queue is full");
        assert_eq!(rx.recv().await, Some(1));
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("room wakes the waiting sender")
            .unwrap()
            .unwrap();
        assert_eq!(rx.recv().await, Some(2));
        assert_eq!(rx.recv().await, Some(3));
    }

    #[tokio::test]
    async fn a_gone_receiver_refuses_and_frees_a_waiting_sender() {
        let (tx, rx) = queue::<u32>(1);
        tx.try_send(1).unwrap();
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(2).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(rx);
        let back = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the receiver leaving wakes the waiting sender")
            .unwrap();
        assert_eq!(back, Err(2));
        assert_eq!(tx.try_send(3), Err(Refused::Closed(3)));
    }

    #[tokio::test]
    async fn the_receiver_wakes_for_a_frame_sent_while_it_waits() {
        let (tx, mut rx) = queue::<u32>(4);
        let recv = tokio::spawn(async move { rx.recv().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        tx.try_send(7).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), recv)
            .await
            .expect("a frame wakes the receiver")
            .unwrap();
        assert_eq!(got, Some(7));
    }

    #[tokio::test]
    async fn a_drained_queue_holds_no_buffer() {
        let (tx, mut rx) = queue::<u64>(4096);
        assert_eq!(rx.shared.state.lock().items.capacity(), 0);
        for i in 0..1000 {
            tx.try_send(i).unwrap();
        }
        assert_eq!(rx.try_recv(), Some(0));
        assert!(rx.shared.state.lock().items.capacity() >= 999);
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.state.lock().items.capacity(), 0);
    }
}
