//! Roles and privileges, Postgres' way: who may log in, read, write, create and drop.
//!
//! The users of the config's `[users]` table are superusers, as before roles existed. Roles
//! made with `CREATE ROLE` live in the manifest with their SCRAM verifier (never the password),
//! and so do relations' owners and grants ([`Acl`], by relation name). With `auth = none` any
//! other name logs in as a superuser (trust, on loopback only); a role's name gets that role's
//! rights.
//!
//! Each statement runs as a [`Principal`], resolved from the manifest at its start, so a
//! `REVOKE` holds from the next statement of every session. The principal also rides in the
//! statement's DataFusion configuration, where functions and catalog tables that answer per
//! caller (`pg_cancel_backend`, `pg_stat_activity`) find it.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use datafusion::common::config::{ConfigEntry, ConfigExtension, ExtensionOptions};
use datafusion::config::ConfigOptions;
use serde::{Deserialize, Serialize};

use crate::config::{Access, AuthMethod};
use crate::storage::{Manifest, Storage};

/// The grantee that stands for every role.
pub const PUBLIC: &str = "public";

/// A role made with `CREATE ROLE`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RoleDef {
    pub login: bool,
    pub superuser: bool,
    /// `GRANT CREATE ON SCHEMA public`: may create tables, sources and views.
    #[serde(default)]
    pub create: bool,
    /// Postgres' SCRAM verifier of the password (`crate::server::scram::Verifier`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// What a role may do to a relation beyond owning it, in the order `aclitem` text lists
/// them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Privilege {
    Insert,
    Select,
    /// UPDATE of a table's rows (tables with a primary key).
    Update,
    /// DELETE of a table's rows (tables with a primary key).
    Delete,
}

impl Privilege {
    pub const ALL: [Privilege; 4] = [
        Privilege::Insert,
        Privilege::Select,
        Privilege::Update,
        Privilege::Delete,
    ];

    /// The name SQL and `information_schema` use.
    pub fn name(self) -> &'static str {
        match self {
            Privilege::Insert => "INSERT",
            Privilege::Select => "SELECT",
            Privilege::Update => "UPDATE",
            Privilege::Delete => "DELETE",
        }
    }

    /// The letter of `aclitem` text (`relacl`).
    pub fn letter(self) -> char {
        match self {
            Privilege::Insert => 'a',
            Privilege::Select => 'r',
            Privilege::Update => 'w',
            Privilege::Delete => 'd',
        }
    }
}

/// A relation's owner and grants.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Acl {
    /// `None` for relations made before roles existed: only superusers own them.
    pub owner: Option<String>,
    #[serde(default)]
    pub grants: BTreeMap<String, BTreeSet<Privilege>>,
}

impl Acl {
    pub fn owned_by(owner: &str) -> Self {
        Acl {
            owner: Some(owner.to_string()),
            grants: BTreeMap::new(),
        }
    }

    /// Postgres' `aclitem[]` text of `relacl` (`{reader=r/owner,=r/owner}`); `None` with no
    /// grants, which Postgres shows as NULL (the owner's default rights).
    pub fn aclitems(&self) -> Option<Vec<String>> {
        if self.grants.is_empty() {
            return None;
        }
        let owner = self.owner.as_deref().unwrap_or("");
        let mut items = Vec::new();
        if !owner.is_empty() {
            let all: String = Privilege::ALL.iter().map(|p| p.letter()).collect();
            items.push(format!("{owner}={all}/{owner}"));
        }
        for (grantee, privileges) in &self.grants {
            let letters: String = privileges.iter().map(|p| p.letter()).collect();
            let grantee = if grantee == PUBLIC { "" } else { grantee };
            items.push(format!("{grantee}={letters}/{owner}"));
        }
        Some(items)
    }
}

/// Who runs a statement, as of its start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Principal {
    pub name: String,
    pub superuser: bool,
    /// May create relations.
    pub create: bool,
}

impl Principal {
    /// A superuser, for the server's own work (the demo script, stored views at start).
    pub fn server() -> Self {
        Principal {
            name: String::new(),
            superuser: true,
            create: true,
        }
    }

    /// The owner and grants of a relation this principal creates (none for the server's own).
    pub fn new_acl(&self) -> Acl {
        match self.name.is_empty() {
            true => Acl::default(),
            false => Acl::owned_by(&self.name),
        }
    }

    /// Whether this role owns `relation` (or may act as if it did).
    pub fn owns(&self, m: &Manifest, relation: &str) -> bool {
        self.superuser
            || m.privileges
                .get(relation)
                .and_then(|acl| acl.owner.as_deref())
                == Some(self.name.as_str())
    }

    /// Whether this role may do `privilege` to `relation`.
    pub fn may(&self, m: &Manifest, relation: &str, privilege: Privilege) -> bool {
        self.owns(m, relation)
            || m.privileges.get(relation).is_some_and(|acl| {
                [self.name.as_str(), PUBLIC].iter().any(|grantee| {
                    acl.grants
                        .get(*grantee)
                        .is_some_and(|p| p.contains(&privilege))
                })
            })
    }

    /// The principal a statement's DataFusion configuration carries; a role that may do
    /// nothing where none does, so a path that forgets to say who runs a statement fails
    /// closed.
    pub fn of(options: &ConfigOptions) -> Principal {
        options
            .extensions
            .get::<Principal>()
            .cloned()
            .unwrap_or_default()
    }
}

impl ConfigExtension for Principal {
    const PREFIX: &'static str = "sluice_principal";
}

impl ExtensionOptions for Principal {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn cloned(&self) -> Box<dyn ExtensionOptions> {
        Box::new(self.clone())
    }

    /// Not settable: who runs a statement is not for the statement to say.
    fn set(&mut self, key: &str, _value: &str) -> datafusion::error::Result<()> {
        Err(datafusion::error::DataFusionError::Plan(format!(
            "parameter \"{key}\" cannot be changed"
        )))
    }

    fn entries(&self) -> Vec<ConfigEntry> {
        Vec::new()
    }
}

/// Resolves names to roles: the config's users, then the manifest's roles.
#[derive(Debug)]
pub struct Roles {
    /// The config's `[users]`: superusers.
    config_users: BTreeSet<String>,
    /// `auth = none`: names that are not roles log in as superusers.
    trust: bool,
    storage: Arc<Storage>,
}

impl Roles {
    pub fn new(access: &Access, storage: Arc<Storage>) -> Self {
        Roles {
            config_users: access.users.keys().cloned().collect(),
            trust: access.auth == AuthMethod::None,
            storage,
        }
    }

    /// The newest manifest, where roles and grants are.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.storage.manifest()
    }

    /// Whether `name` is a role: a config user or one of the manifest.
    pub fn exists(&self, m: &Manifest, name: &str) -> bool {
        self.config_users.contains(name) || m.roles.contains_key(name)
    }

    /// Whether `name` is a config user (whose password the config holds).
    pub fn is_config_user(&self, name: &str) -> bool {
        self.config_users.contains(name)
    }

    /// The role `name` acts as, from the newest manifest. A name that is no role (dropped
    /// since it logged in) may do nothing, unless the server trusts every name.
    pub fn principal(&self, name: &str) -> Principal {
        self.principal_in(&self.storage.manifest(), name)
    }

    pub fn principal_in(&self, m: &Manifest, name: &str) -> Principal {
        let (superuser, create) = if self.config_users.contains(name) {
            (true, true)
        } else if let Some(role) = m.roles.get(name) {
            (role.superuser, role.superuser || role.create)
        } else {
            (self.trust, self.trust)
        };
        Principal {
            name: name.to_string(),
            superuser,
            create,
        }
    }

    /// A catalog role's login rights: `None` for names that are not catalog roles, else
    /// whether it may log in and its stored verifier.
    pub fn login(&self, name: &str) -> Option<(bool, Option<String>)> {
        if self.config_users.contains(name) {
            return None;
        }
        let m = self.storage.manifest();
        m.roles
            .get(name)
            .map(|role| (role.login, role.password.clone()))
    }

    /// Every role, config users first, as `pg_roles` lists them: name and role. A name the
    /// server trusts (`auth = none`) is a superuser role to the caller using it.
    pub fn all(&self, caller: &Principal) -> Vec<(String, RoleDef)> {
        let m = self.storage.manifest();
        let superuser = RoleDef {
            login: true,
            superuser: true,
            create: true,
            password: None,
        };
        let trusted = (self.trust && !caller.name.is_empty() && !self.exists(&m, &caller.name))
            .then(|| caller.name.clone());
        let config = self.config_users.iter().cloned().chain(trusted);
        config
            .map(|name| (name, superuser.clone()))
            .chain(m.roles.iter().map(|(n, r)| (n.clone(), r.clone())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_with(acl: Acl) -> Manifest {
        let mut m = Manifest::empty();
        m.privileges.insert("clicks".into(), acl);
        m
    }

    fn role(name: &str) -> Principal {
        Principal {
            name: name.into(),
            superuser: false,
            create: false,
        }
    }

    #[test]
    fn owners_grants_and_public_decide_what_a_role_may_do() {
        let mut acl = Acl::owned_by("etl");
        acl.grants
            .entry("reader".into())
            .or_default()
            .insert(Privilege::Select);
        let m = manifest_with(acl.clone());
        assert!(role("etl").may(&m, "clicks", Privilege::Insert));
        assert!(role("reader").may(&m, "clicks", Privilege::Select));
        assert!(!role("reader").may(&m, "clicks", Privilege::Insert));
        assert!(!role("other").may(&m, "clicks", Privilege::Select));
        assert!(!role("reader").may(&m, "unknown", Privilege::Select));
        assert!(Principal::server().may(&m, "unknown", Privilege::Insert));

        let mut public = acl;
        public
            .grants
            .entry(PUBLIC.into())
            .or_default()
            .insert(Privilege::Select);
        let m = manifest_with(public.clone());
        assert!(role("other").may(&m, "clicks", Privilege::Select));
        assert_eq!(
            public.aclitems().unwrap(),
            vec!["etl=arwd/etl", "=r/etl", "reader=r/etl"]
        );
        assert_eq!(Acl::owned_by("etl").aclitems(), None);
    }
}
