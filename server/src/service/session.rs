//! A WebSocket device's life in the service: attached to the hub (its bounded outgoing
//! queue) and to presence when it connects, detached from both exactly once when it goes,
//! whichever way it goes.

use std::sync::Arc;

use super::{Service, check_presence_list};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::hub::{CloseSignal, ConnId, DeviceHandle, Outbound, queue};
use crate::model::UserId;
use crate::presence;
use crate::protocol::{Encoded, MsgOut, ServerFrame};
use crate::store::{InboxItem, StoreError};

/// A connected device. Dropping it takes the device out of the hub and presence.
pub struct Device {
    svc: Arc<Service>,
    user: UserId,
    /// What other tasks use to reach the device: its queue and its close signal.
    pub handle: DeviceHandle,
}

impl Device {
    /// The connection id of the device.
    pub fn conn(&self) -> ConnId {
        self.handle.conn
    }

    /// The device's close signal.
    pub fn close(&self) -> &Arc<CloseSignal> {
        &self.handle.close
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        let svc = &self.svc;
        svc.hub.unregister(self.user, self.handle.conn);
        svc.presence.unsubscribe(self.handle.conn);
        svc.presence.disconnect(self.user);
        svc.metrics.connections.dec();
        tracing::debug!(conn = %self.handle.conn, user = self.user, "disconnected");
    }
}

impl Service {
    /// Attaches a device that just connected: registered in the hub before its inbox head
    /// is read (a message stored in between is then at or below the head, so the client
    /// syncs it, or queued for the device, so it is written live; never lost), and counted
    /// as connected in presence. Returns the device and its outgoing queue's receiver.
    pub fn attach(self: &Arc<Self>, who: &Identity) -> (Device, queue::Receiver<Outbound>) {
        let conn = self.hub.next_conn();
        let (tx, rx) = queue::queue(self.config.device_queue);
        let handle = DeviceHandle {
            conn,
            device: who.device.clone(),
            tx,
            close: Arc::new(CloseSignal::default()),
            own: Arc::default(),
        };
        self.hub.register(who.user, handle.clone());
        self.presence.connect(who.user);
        self.metrics.connections.inc();
        tracing::debug!(conn = %conn, user = who.user, device = %who.device, "connected");
        let device = Device {
            svc: self.clone(),
            user: who.user,
            handle,
        };
        (device, rx)
    }

    /// The newest position of a user's inbox: where a new device's live stream starts.
    pub async fn inbox_head(&self, user: UserId) -> Result<u64, StoreError> {
        self.store.inbox_head(user).await
    }

    /// Inbox entries of `user` after `after`, at most `limit`, to fill a gap in a
    /// device's live stream.
    pub async fn inbox_entries(
        &self,
        user: UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.store.inbox(user, after, limit).await
    }

    /// `presence_sub`: subscribes the device to the users' changes; the snapshot goes out
    /// through the device's queue, ahead of later changes.
    pub async fn subscribe_presence(
        &self,
        device: &Device,
        users: Vec<UserId>,
    ) -> Result<(), ApiError> {
        check_presence_list(&users)?;
        let me = &device.handle;
        for out in self.presence.subscribe(me, users) {
            if me
                .tx
                .send(Outbound::Frame(presence::frame(&out)))
                .await
                .is_err()
            {
                break;
            }
        }
        Ok(())
    }

    /// Counts a live `msg` written to a device.
    pub fn delivered_one(&self) {
        self.metrics.messages_delivered.inc();
    }

    /// Counts a device cut off for not reading.
    pub fn overflow_closed(&self) {
        self.metrics.overflow_closed.inc();
    }
}

/// A stored inbox entry as the `msg` frame a device's live stream carries.
pub fn msg_frame(item: &InboxItem) -> Encoded {
    ServerFrame::Msg(&MsgOut::from(item)).encode()
}
