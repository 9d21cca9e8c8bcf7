//! Who may run a statement, and the statements that change that: `CREATE`/`ALTER`/`DROP ROLE`,
//! `GRANT` and `REVOKE` (see [`crate::catalog::roles`] for the model).
//!
//! Reads are checked on the logical plan, so every way a relation can be named — a join, a
//! subquery, a window function's argument, `COPY (query) TO` — is seen. Each change is one
//! manifest commit, with the checks repeated inside it against the manifest it changes.

use std::collections::BTreeSet;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, TableScan, WriteOp};
use sqlparser::ast::{
    Action, AlterRoleOperation, CreateRole, Expr, Grant, GrantObjects, Grantee, GranteeName,
    GranteesType, ObjectName, Password, Privileges, Revoke, RoleOption, Value,
};

use super::Output;
use crate::catalog::roles::{PUBLIC, Principal, Privilege, RoleDef, Roles};
use crate::catalog::{DATABASE_NAME, SCHEMA_NAME};
use crate::error::{Error, Result};
use crate::planner::functions::{LookupRelation, WindowedRelation};
use crate::server::scram::Verifier;
use crate::sql::parser::table_name;
use crate::storage::{Manifest, Storage};

/// Fails unless `principal` may do `privilege` to every relation of ours `plan` reads or
/// writes.
pub fn check_plan(m: &Manifest, principal: &Principal, plan: &LogicalPlan) -> Result<()> {
    if principal.superuser {
        return Ok(());
    }
    let mut needed = Vec::new();
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(scan) => {
                needed.extend(scanned(scan).map(|name| (name, Privilege::Select)))
            }
            LogicalPlan::Dml(DmlStatement {
                table_name,
                op: WriteOp::Insert(_),
                ..
            }) if is_ours(table_name) => {
                needed.push((table_name.table().to_string(), Privilege::Insert));
            }
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    for (relation, privilege) in needed {
        require(m, principal, &relation, privilege)?;
    }
    Ok(())
}

/// The relation of ours a scan reads: a `public` one, or a window function's or `lookup`'s
/// input.
fn scanned(scan: &TableScan) -> Option<String> {
    if let Ok(provider) = source_as_provider(&scan.source) {
        if let Some(windowed) = provider.as_ref().downcast_ref::<WindowedRelation>() {
            return Some(windowed.input.name.clone());
        }
        if let Some(dimension) = provider.as_ref().downcast_ref::<LookupRelation>() {
            return Some(dimension.input.name.clone());
        }
    }
    is_ours(&scan.table_name).then(|| scan.table_name.table().to_string())
}

fn is_ours(name: &datafusion::common::TableReference) -> bool {
    name.catalog().is_none_or(|c| c == DATABASE_NAME)
        && name.schema().is_none_or(|s| s == SCHEMA_NAME)
}

/// Fails unless `principal` may do `privilege` to `relation` (a relation that does not exist
/// is left to planning to report).
pub fn require(
    m: &Manifest,
    principal: &Principal,
    relation: &str,
    privilege: Privilege,
) -> Result<()> {
    match m.relation_kind(relation) {
        Some(kind) if !principal.may(m, relation, privilege) => Err(Error::InsufficientPrivilege(
            format!("permission denied for {kind} {relation}"),
        )),
        _ => Ok(()),
    }
}

/// Fails unless `principal` owns `relation` (DROP, ALTER, GRANT).
pub fn require_owner(m: &Manifest, principal: &Principal, relation: &str) -> Result<()> {
    match m.relation_kind(relation) {
        Some(kind) if !principal.owns(m, relation) => Err(Error::InsufficientPrivilege(format!(
            "must be owner of {kind} {relation}"
        ))),
        _ => Ok(()),
    }
}

/// Fails unless `principal` may create relations in `public`.
pub fn require_create(principal: &Principal) -> Result<()> {
    match principal.create {
        true => Ok(()),
        false => Err(Error::InsufficientPrivilege(format!(
            "permission denied for schema {SCHEMA_NAME}"
        ))),
    }
}

/// `FLUSH` commits every source and view: for those who may create them.
pub fn require_flush(principal: &Principal) -> Result<()> {
    match principal.create {
        true => Ok(()),
        false => Err(Error::InsufficientPrivilege(
            "permission denied to flush: FLUSH needs the CREATE privilege on schema public".into(),
        )),
    }
}

fn require_superuser(principal: &Principal, action: &str) -> Result<()> {
    match principal.superuser {
        true => Ok(()),
        false => Err(Error::InsufficientPrivilege(format!(
            "permission denied to {action}"
        ))),
    }
}

/// A role name that is not Postgres' to keep (`public`, `pg_…`, `none`).
fn check_name(name: &str) -> Result<()> {
    if name == PUBLIC || name == "none" || name.starts_with("pg_") {
        return Err(Error::ReservedName(format!(
            "role name \"{name}\" is reserved"
        )));
    }
    Ok(())
}

fn role_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(crate::sql::normalize_ident)
            .ok_or_else(|| Error::Syntax(format!("invalid role name {name}"))),
        _ => Err(Error::Syntax(format!("invalid role name {name}"))),
    }
}

pub async fn create_role(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    create: &CreateRole,
) -> Result<Output> {
    require_superuser(principal, "create role")?;
    let mut role = RoleDef::default();
    let options = [
        create.login.map(RoleOption::Login),
        create.superuser.map(RoleOption::SuperUser),
        create.password.clone().map(RoleOption::Password),
        create.create_db.map(RoleOption::CreateDB),
        create.create_role.map(RoleOption::CreateRole),
        create.replication.map(RoleOption::Replication),
        create.bypassrls.map(RoleOption::BypassRLS),
        create
            .connection_limit
            .clone()
            .map(RoleOption::ConnectionLimit),
        create.valid_until.clone().map(RoleOption::ValidUntil),
    ];
    for option in options.into_iter().flatten() {
        apply(&mut role, &option)?;
    }
    if !(create.in_role.is_empty()
        && create.in_group.is_empty()
        && create.role.is_empty()
        && create.user.is_empty()
        && create.admin.is_empty())
    {
        return Err(Error::unsupported("role membership", None));
    }
    let names = create
        .names
        .iter()
        .map(role_name)
        .collect::<Result<Vec<_>>>()?;
    for name in &names {
        check_name(name)?;
    }
    let if_not_exists = create.if_not_exists;
    storage
        .commit(|m| {
            for name in &names {
                if roles.exists(m, name) {
                    if if_not_exists {
                        continue;
                    }
                    return Err(Error::DuplicateRole(name.clone()));
                }
                m.roles.insert(name.clone(), role.clone());
            }
            Ok(())
        })
        .await?;
    Ok(Output::command("CREATE ROLE"))
}

/// One role option onto `role`: the ones SluiceDB has, 0A000 for the others.
fn apply(role: &mut RoleDef, option: &RoleOption) -> Result<()> {
    match option {
        RoleOption::Login(login) => role.login = *login,
        RoleOption::SuperUser(superuser) => role.superuser = *superuser,
        RoleOption::Password(Password::NullPassword) => role.password = None,
        RoleOption::Password(Password::Password(Expr::Value(value))) => {
            let Value::SingleQuotedString(text) = &value.value else {
                return Err(Error::Syntax("a password is a string literal".into()));
            };
            role.password = Some(verifier(text)?);
        }
        RoleOption::Password(_) => {
            return Err(Error::Syntax("a password is a string literal".into()));
        }
        // Postgres' defaults, which change nothing here.
        RoleOption::Inherit(true)
        | RoleOption::CreateDB(false)
        | RoleOption::CreateRole(false)
        | RoleOption::Replication(false)
        | RoleOption::BypassRLS(false) => {}
        RoleOption::ConnectionLimit(Expr::Value(v)) if matches!(&v.value, Value::Number(n, _) if n == "-1") =>
            {}
        other => return Err(Error::unsupported(format!("role option {other}"), None)),
    }
    Ok(())
}

/// The verifier to store for a password as given: a SCRAM verifier is kept as it is (as
/// Postgres keeps one from `pg_dumpall`); anything else is the password itself.
fn verifier(text: &str) -> Result<String> {
    if text.is_empty() {
        return Err(Error::InvalidParameter(
            "a password must not be empty".into(),
        ));
    }
    if let Some(verifier) = Verifier::parse(text) {
        return Ok(verifier.to_string());
    }
    if text.len() == 35 && text.starts_with("md5") {
        return Err(Error::unsupported(
            "an MD5 password hash",
            Some("Give the password itself, or a SCRAM-SHA-256 verifier."),
        ));
    }
    Ok(Verifier::new(text).to_string())
}

pub async fn alter_role(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    name: &str,
    operation: &AlterRoleOperation,
) -> Result<Output> {
    if roles.is_config_user(name) {
        return Err(config_user(name));
    }
    // A role may change its own password; everything else is a superuser's.
    let own_password = matches!(operation, AlterRoleOperation::WithOptions { options }
        if options.iter().all(|o| matches!(o, RoleOption::Password(_))))
        && principal.name == name;
    if !own_password {
        require_superuser(principal, "alter role")?;
    }
    match operation {
        AlterRoleOperation::WithOptions { options } => {
            storage
                .commit(|m| {
                    let role = m
                        .roles
                        .get_mut(name)
                        .ok_or_else(|| Error::UndefinedRole(name.to_string()))?;
                    options.iter().try_for_each(|option| apply(role, option))
                })
                .await?;
        }
        AlterRoleOperation::RenameRole { role_name } => {
            let new = crate::sql::normalize_ident(role_name);
            check_name(&new)?;
            if principal.name == name {
                return Err(Error::InsufficientPrivilege(
                    "session user cannot be renamed".into(),
                ));
            }
            storage
                .commit(|m| match roles.exists(m, &new) {
                    true => Err(Error::DuplicateRole(new.clone())),
                    false => rename(m, name, &new),
                })
                .await?;
        }
        other => return Err(Error::unsupported(format!("ALTER ROLE … {other}"), None)),
    }
    Ok(Output::command("ALTER ROLE"))
}

/// Renames a role, with what it owns and was granted.
fn rename(m: &mut Manifest, old: &str, new: &str) -> Result<()> {
    let role = m
        .roles
        .remove(old)
        .ok_or_else(|| Error::UndefinedRole(old.to_string()))?;
    m.roles.insert(new.to_string(), role);
    for acl in m.privileges.values_mut() {
        if acl.owner.as_deref() == Some(old) {
            acl.owner = Some(new.to_string());
        }
        if let Some(granted) = acl.grants.remove(old) {
            acl.grants.insert(new.to_string(), granted);
        }
    }
    Ok(())
}

pub async fn drop_roles(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    names: &[ObjectName],
    if_exists: bool,
) -> Result<Output> {
    require_superuser(principal, "drop role")?;
    let names = names.iter().map(role_name).collect::<Result<Vec<_>>>()?;
    for name in &names {
        if *name == principal.name {
            return Err(Error::InsufficientPrivilege(
                "current user cannot be dropped".into(),
            ));
        }
        if roles.is_config_user(name) {
            return Err(config_user(name));
        }
    }
    storage
        .commit(|m| {
            for name in &names {
                if !m.roles.contains_key(name) {
                    if if_exists {
                        continue;
                    }
                    return Err(Error::UndefinedRole(name.clone()));
                }
                let dependents = dependents(m, name);
                if !dependents.is_empty() {
                    return Err(Error::RoleInUse {
                        name: name.clone(),
                        dependents,
                    });
                }
                m.roles.remove(name);
            }
            Ok(())
        })
        .await?;
    Ok(Output::command("DROP ROLE"))
}

/// What keeps a role from being dropped, in Postgres' words.
fn dependents(m: &Manifest, role: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (relation, acl) in &m.privileges {
        let kind = m.relation_kind(relation).unwrap_or("relation");
        if acl.owner.as_deref() == Some(role) {
            found.push(format!("owner of {kind} {relation}"));
        }
        if acl.grants.contains_key(role) {
            found.push(format!("privileges for {kind} {relation}"));
        }
    }
    found
}

fn config_user(name: &str) -> Error {
    Error::unsupported(
        format!("changing role \"{name}\" of the config file"),
        Some("Change it in the [users] table of the config file."),
    )
}

/// What a GRANT or REVOKE names, checked.
struct Change {
    privileges: BTreeSet<Privilege>,
    /// `ON SCHEMA public` with `CREATE` (`USAGE` alone changes nothing: everyone has it).
    schema_create: Option<bool>,
    relations: Vec<String>,
    grantees: Vec<String>,
}

fn change(
    m: &Manifest,
    roles: &Roles,
    privileges: &Privileges,
    objects: Option<&GrantObjects>,
    grantees: &[Grantee],
) -> Result<Change> {
    let grantees = grantees
        .iter()
        .map(|grantee| grantee_name(m, roles, grantee))
        .collect::<Result<Vec<_>>>()?;
    let actions = match privileges {
        Privileges::All { .. } => None,
        Privileges::Actions(actions) => Some(actions.as_slice()),
    };
    match objects {
        Some(GrantObjects::Schemas(schemas)) => {
            for schema in schemas {
                if table_name(schema)? != SCHEMA_NAME {
                    return Err(Error::unsupported(
                        format!("GRANT ON SCHEMA {schema}"),
                        None,
                    ));
                }
            }
            let mut create = actions.is_none();
            for action in actions.unwrap_or_default() {
                match action {
                    Action::Create { obj_type: None } => create = true,
                    Action::Usage => {}
                    other => {
                        return Err(Error::InvalidParameter(format!(
                            "invalid privilege type {other} for schema"
                        )));
                    }
                }
            }
            Ok(Change {
                privileges: BTreeSet::new(),
                schema_create: Some(create),
                relations: Vec::new(),
                grantees,
            })
        }
        Some(GrantObjects::Tables(names) | GrantObjects::Views(names)) => {
            let relations = names.iter().map(table_name).collect::<Result<Vec<_>>>()?;
            for relation in &relations {
                if m.relation_kind(relation).is_none() {
                    return Err(Error::UndefinedRelation {
                        kind: "relation",
                        name: relation.clone(),
                    });
                }
            }
            Ok(Change {
                privileges: relation_privileges(actions)?,
                schema_create: None,
                relations,
                grantees,
            })
        }
        Some(
            GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllMaterializedViewsInSchema { schemas },
        ) => {
            for schema in schemas {
                if table_name(schema)? != SCHEMA_NAME {
                    return Err(Error::UndefinedRelation {
                        kind: "schema",
                        name: schema.to_string(),
                    });
                }
            }
            let views_only = matches!(
                objects,
                Some(
                    GrantObjects::AllViewsInSchema { .. }
                        | GrantObjects::AllMaterializedViewsInSchema { .. }
                )
            );
            let relations = m
                .views
                .keys()
                .chain(
                    m.tables
                        .keys()
                        .chain(m.sources.keys())
                        .filter(|_| !views_only),
                )
                .cloned()
                .collect();
            Ok(Change {
                privileges: relation_privileges(actions)?,
                schema_create: None,
                relations,
                grantees,
            })
        }
        None => Err(Error::unsupported(
            "granting a role to a role",
            Some("Grant privileges on relations instead."),
        )),
        Some(other) => Err(Error::unsupported(format!("GRANT … ON {other}"), None)),
    }
}

fn relation_privileges(actions: Option<&[Action]>) -> Result<BTreeSet<Privilege>> {
    let Some(actions) = actions else {
        return Ok(Privilege::ALL.into_iter().collect());
    };
    actions
        .iter()
        .map(|action| match action {
            Action::Select { columns: None } => Ok(Privilege::Select),
            Action::Insert { columns: None } => Ok(Privilege::Insert),
            Action::Update { columns: None } => Ok(Privilege::Update),
            Action::Delete => Ok(Privilege::Delete),
            Action::Select { .. } | Action::Insert { .. } | Action::Update { .. } => {
                Err(Error::unsupported("column privileges", None))
            }
            other => Err(Error::unsupported(
                format!("the {other} privilege"),
                Some("Relations here have SELECT, INSERT, UPDATE and DELETE privileges."),
            )),
        })
        .collect()
}

fn grantee_name(m: &Manifest, roles: &Roles, grantee: &Grantee) -> Result<String> {
    match (&grantee.grantee_type, &grantee.name) {
        (GranteesType::Public, _) => Ok(PUBLIC.to_string()),
        (_, Some(GranteeName::ObjectName(name))) => {
            let name = role_name(name)?;
            if name == PUBLIC {
                return Ok(name);
            }
            match roles.exists(m, &name) {
                true => Ok(name),
                false => Err(Error::UndefinedRole(name)),
            }
        }
        _ => Err(Error::Syntax(format!("invalid grantee {grantee}"))),
    }
}

pub async fn grant(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    grant: &Grant,
) -> Result<Output> {
    if grant.with_grant_option {
        return Err(Error::unsupported("WITH GRANT OPTION", None));
    }
    let named = (
        &grant.privileges,
        grant.objects.as_ref(),
        &grant.grantees[..],
    );
    commit_change(storage, roles, principal, named, true).await?;
    Ok(Output::command("GRANT"))
}

pub async fn revoke(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    revoke: &Revoke,
) -> Result<Output> {
    let named = (
        &revoke.privileges,
        revoke.objects.as_ref(),
        &revoke.grantees[..],
    );
    commit_change(storage, roles, principal, named, false).await?;
    Ok(Output::command("REVOKE"))
}

/// Checks what a GRANT (`grant`) or REVOKE names against the manifest it changes, and
/// changes it.
async fn commit_change(
    storage: &Storage,
    roles: &Roles,
    principal: &Principal,
    (privileges, objects, grantees): (&Privileges, Option<&GrantObjects>, &[Grantee]),
    grant: bool,
) -> Result<()> {
    storage
        .commit(|m| {
            let change = change(m, roles, privileges, objects, grantees)?;
            apply_change(m, roles, principal, &change, grant)
        })
        .await?;
    Ok(())
}

fn apply_change(
    m: &mut Manifest,
    roles: &Roles,
    principal: &Principal,
    change: &Change,
    grant: bool,
) -> Result<()> {
    if let Some(create) = change.schema_create {
        if !create {
            return Ok(());
        }
        require_superuser(principal, "grant or revoke CREATE on schema public")?;
        for grantee in &change.grantees {
            match m.roles.get_mut(grantee) {
                Some(role) => role.create = grant,
                // Config users have every right; PUBLIC may not be given CREATE here.
                None if roles.is_config_user(grantee) => {}
                None => {
                    return Err(Error::unsupported(
                        "CREATE on schema public for PUBLIC",
                        Some("Grant it to the roles that create relations."),
                    ));
                }
            }
        }
        return Ok(());
    }
    for relation in &change.relations {
        // Postgres' words for a GRANT by a role without grant options.
        if !principal.owns(m, relation) {
            let kind = m.relation_kind(relation).unwrap_or("relation");
            return Err(Error::InsufficientPrivilege(format!(
                "permission denied for {kind} {relation}"
            )));
        }
        let acl = m.privileges.entry(relation.clone()).or_default();
        for grantee in &change.grantees {
            let held = acl.grants.entry(grantee.clone()).or_default();
            for privilege in &change.privileges {
                match grant {
                    true => held.insert(*privilege),
                    false => held.remove(privilege),
                };
            }
            if held.is_empty() {
                acl.grants.remove(grantee);
            }
        }
    }
    Ok(())
}
