//! Group chats: creating one, reading it, adding and removing members. The membership
//! rules themselves are the store's ([`crate::store::rules`]), applied in order with the
//! group's sends; here are the limits of the request.

use super::{GroupOut, MAX_GROUP_NAME, Service};
use crate::auth::Identity;
use crate::error::ApiError;
use crate::model::{ConvId, UserId};
use crate::store::{Group, MemberChange, Refusal, rules};

impl Service {
    /// The group, if it exists and `user` is a current member.
    async fn member_of(&self, user: UserId, g: u64) -> Result<Group, ApiError> {
        let group = self.store.group(g).await?.ok_or(Refusal::NoGroup(g))?;
        rules::participants(ConvId::Group(g), user, Some(&group))?;
        Ok(group)
    }

    /// Creates a group; the caller is a member and the admin.
    pub async fn create_group(
        &self,
        who: &Identity,
        name: &str,
        members: &[UserId],
    ) -> Result<GroupOut, ApiError> {
        let name = name.trim();
        if name.is_empty() || name.len() > MAX_GROUP_NAME {
            return Err(ApiError::bad_request(format!(
                "a group name is 1 to {MAX_GROUP_NAME} bytes"
            )));
        }
        if members.contains(&0) {
            return Err(ApiError::bad_request(
                "user ids are integers greater than 0",
            ));
        }
        let mut all: Vec<UserId> = members.to_vec();
        all.push(who.user);
        all.sort_unstable();
        all.dedup();
        if all.len() > self.config.max_group_members {
            return Err(ApiError::bad_request(format!(
                "a group has at most {} members, {} were given",
                self.config.max_group_members,
                all.len()
            )));
        }
        let group = self
            .store
            .create_group(name.to_owned(), who.user, all)
            .await?;
        Ok(group.into())
    }

    /// A group's details, for its members.
    pub async fn group(&self, who: &Identity, id: u64) -> Result<GroupOut, ApiError> {
        Ok(self.member_of(who.user, id).await?.into())
    }

    /// Adds a member (the admin only).
    pub async fn add_member(
        &self,
        who: &Identity,
        id: u64,
        user: UserId,
    ) -> Result<GroupOut, ApiError> {
        if user == 0 {
            return Err(ApiError::bad_request(
                "user ids are integers greater than 0",
            ));
        }
        let change = MemberChange::Add {
            by: who.user,
            user,
            max_members: self.config.max_group_members,
        };
        Ok(self.store.change_members(id, change).await?.into())
    }

    /// Removes a member (the admin, or the member leaving).
    pub async fn remove_member(
        &self,
        who: &Identity,
        id: u64,
        user: UserId,
    ) -> Result<(), ApiError> {
        let change = MemberChange::Remove { by: who.user, user };
        self.store.change_members(id, change).await?;
        Ok(())
    }
}
