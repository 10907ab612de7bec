//! The sequencing state of a shared (`?shared=true`) keyspace: one partition of the
//! `seq_state` table, written only by lightweight transactions.
//!
//! Cassandra's lightweight transactions are linearizable per partition and a conditional
//! batch applies all or nothing within one partition, so keeping every counter and marker
//! of the keyspace in one partition lets a node commit a whole batch of sends (conversation
//! counters, inbox counters, markers, groups, ids) with one compare-and-set, whatever other
//! nodes do. The static columns are the lease that says which node's sequencer may write:
//!
//! | row (`kind`, `a`, `b`) | columns | holds |
//! |---|---|---|
//! | `c`, 0, conv | v1, v2 | a conversation's last seq and time |
//! | `u`, user, `''` | v1 | a user's last useq |
//! | `m`, user, conv | v1..v4 | ack, read, last own seq, own messages after read |
//! | `g`, id, `''` | name, v1, members | a group: name, admin, members |
//! | `x`, 0, name | v1 | the last group id, the last dead-letter id |
//! | static | epoch, owner, lease_until, ceiling, waiting | the lease |
//!
//! The values bound to the writes are the same, in the same order, as those of the
//! single-node counter tables ([`super::schema`]), so one batch of rows serves both modes.

use scylla::client::session::Session;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;

use super::{Settings, db_err};
use crate::store::StoreError;

pub(super) const TABLE: &str = "CREATE TABLE IF NOT EXISTS {ks}.seq_state (p int, kind text, \
     a bigint, b text, v1 bigint, v2 bigint, v3 bigint, v4 bigint, name text, \
     members list<bigint>, epoch bigint static, owner text static, lease_until bigint static, \
     ceiling bigint static, waiting text static, PRIMARY KEY (p, kind, a, b))";

/// The statements on `seq_state`, prepared once at start.
pub struct StateStatements {
    pub init: PreparedStatement,
    pub read_lease: PreparedStatement,
    pub claim: PreparedStatement,
    pub wait: PreparedStatement,
    pub release: PreparedStatement,
    /// The conditional statement at the head of every commit batch.
    pub commit: PreparedStatement,
    pub update_conv: PreparedStatement,
    pub select_conv: PreparedStatement,
    pub update_user: PreparedStatement,
    pub select_user: PreparedStatement,
    pub insert_marks: PreparedStatement,
    pub delete_marks: PreparedStatement,
    pub select_marks: PreparedStatement,
    pub select_user_marks: PreparedStatement,
    pub insert_group: PreparedStatement,
    pub select_group: PreparedStatement,
    pub update_meta: PreparedStatement,
    pub select_meta: PreparedStatement,
}

impl StateStatements {
    pub async fn prepare(session: &Session, s: &Settings) -> Result<Self, StoreError> {
        let t = format!("{}.seq_state", s.keyspace);
        let p = |q: String, idempotent: bool| async move {
            let mut st = session.prepare(q).await.map_err(db_err)?;
            st.set_is_idempotent(idempotent);
            Ok::<_, StoreError>(st)
        };
        // Compare-and-set is not safe to resend blindly: a resent CAS that had applied
        // answers "not applied".
        let cas = |q: String| p(q, false);
        let plain = |q: String| p(q, true);
        let mut read_lease = plain(format!(
            "SELECT epoch, owner, lease_until, ceiling, waiting FROM {t} WHERE p = 0 LIMIT 1"
        ))
        .await?;
        // A SERIAL read: it completes any transaction under way before it answers.
        read_lease.set_consistency(Consistency::LocalSerial);
        Ok(StateStatements {
            init: cas(format!(
                "INSERT INTO {t} (p, epoch, owner, lease_until, ceiling, waiting) \
                 VALUES (0, 0, '', 0, 0, '') IF NOT EXISTS"
            ))
            .await?,
            read_lease,
            claim: cas(format!(
                "UPDATE {t} SET epoch = ?, owner = ?, lease_until = ?, ceiling = ?, waiting = '' \
                 WHERE p = 0 IF epoch = ?"
            ))
            .await?,
            wait: cas(format!(
                "UPDATE {t} SET waiting = ? WHERE p = 0 IF epoch = ?"
            ))
            .await?,
            release: cas(format!(
                "UPDATE {t} SET lease_until = 0, ceiling = ? WHERE p = 0 IF epoch = ?"
            ))
            .await?,
            commit: cas(format!(
                "UPDATE {t} SET lease_until = ?, ceiling = ? WHERE p = 0 IF epoch = ? AND waiting = ?"
            ))
            .await?,
            update_conv: plain(format!(
                "UPDATE {t} SET v1 = ?, v2 = ? WHERE p = 0 AND kind = 'c' AND a = 0 AND b = ?"
            ))
            .await?,
            select_conv: plain(format!(
                "SELECT v1, v2 FROM {t} WHERE p = 0 AND kind = 'c' AND a = 0 AND b = ?"
            ))
            .await?,
            update_user: plain(format!(
                "UPDATE {t} SET v1 = ? WHERE p = 0 AND kind = 'u' AND a = ? AND b = ''"
            ))
            .await?,
            select_user: plain(format!(
                "SELECT v1 FROM {t} WHERE p = 0 AND kind = 'u' AND a = ? AND b = ''"
            ))
            .await?,
            insert_marks: plain(format!(
                "INSERT INTO {t} (p, kind, a, b, v1, v2, v3, v4) VALUES (0, 'm', ?, ?, ?, ?, ?, ?)"
            ))
            .await?,
            delete_marks: plain(format!(
                "DELETE FROM {t} WHERE p = 0 AND kind = 'm' AND a = ? AND b = ?"
            ))
            .await?,
            select_marks: plain(format!(
                "SELECT v1, v2, v3, v4 FROM {t} WHERE p = 0 AND kind = 'm' AND a = ? AND b = ?"
            ))
            .await?,
            select_user_marks: plain(format!(
                "SELECT b, v1, v2, v3, v4 FROM {t} WHERE p = 0 AND kind = 'm' AND a = ?"
            ))
            .await?,
            insert_group: plain(format!(
                "INSERT INTO {t} (p, kind, a, b, name, v1, members) VALUES (0, 'g', ?, '', ?, ?, ?)"
            ))
            .await?,
            select_group: plain(format!(
                "SELECT name, v1, members FROM {t} WHERE p = 0 AND kind = 'g' AND a = ? AND b = ''"
            ))
            .await?,
            update_meta: plain(format!(
                "UPDATE {t} SET v1 = ? WHERE p = 0 AND kind = 'x' AND a = 0 AND b = ?"
            ))
            .await?,
            select_meta: plain(format!(
                "SELECT v1 FROM {t} WHERE p = 0 AND kind = 'x' AND a = 0 AND b = ?"
            ))
            .await?,
        })
    }
}
