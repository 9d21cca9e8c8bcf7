//! The statements that change materialized views: CREATE (with the parts its subqueries run
//! as), ALTER and DROP.

use super::{Database, Drop, Output, Warning, commit_drop, forget_views, privileges};
use crate::catalog::roles::{Principal, Privilege};
use crate::catalog::view::ViewDef;
use crate::error::{Error, Result};
use crate::sql::{AlterView, CreateView};
use crate::storage::ViewState;
use crate::stream::plan::ViewPlan;
use crate::view::Replay;

/// `CREATE MATERIALIZED VIEW`: the view and its parts (subqueries that run as views of their
/// own, see [`crate::stream::plan::ViewPart`]) in one commit, then started, parts first.
pub async fn create_view(
    db: &Database,
    create: &CreateView,
    principal: &Principal,
) -> Result<Output> {
    privileges::require_create(principal)?;
    let done = Output::Command {
        tag: "CREATE MATERIALIZED VIEW",
        rows: None,
    };
    let storage = db.storage();
    if create.if_not_exists && storage.manifest().has_relation(&create.name) {
        return Ok(done);
    }
    let plan = db
        .plan_view(&create.name, &create.query, create.emit_on_close)
        .await?
        .with_state_ttl(state_ttl_us(create.state_ttl.as_deref())?);
    let manifest = storage.manifest();
    for input in read_relations(&plan) {
        privileges::require(&manifest, principal, input, Privilege::Select)?;
    }
    drop(manifest);
    if create.retention.is_some() && !plan.window.as_ref().is_some_and(|w| w.kind.closes()) {
        return Err(Error::unsupported(
            "retention on a materialized view without windows",
            Some(
                "Retention drops the files of old windows: give the view a TUMBLE, HOP, CUMULATE or SESSION window.",
            ),
        ));
    }
    let mut views: Vec<(ViewDef, &ViewPlan)> = plan
        .parts
        .iter()
        .map(|part| {
            let query = part
                .alias
                .as_deref()
                .and_then(|alias| crate::sql::view::subquery(&create.query, alias))
                .unwrap_or_else(|| create.query.to_string());
            let mut def = view_def(&part.name, query, false, &part.plan);
            def.part_of = Some(create.name.clone());
            (def, &part.plan)
        })
        .collect();
    let mut def = view_def(
        &create.name,
        create.query.to_string(),
        create.emit_on_close,
        &plan,
    );
    def.retention = create.retention.clone();
    def.state_ttl = create.state_ttl.clone();
    views.push((def, &plan));
    let mut created = false;
    storage
        .commit(|m| {
            if m.has_relation(&create.name) {
                return match create.if_not_exists {
                    true => Ok(()),
                    false => Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: create.name.clone(),
                    }),
                };
            }
            for (def, _) in &mut views {
                if m.has_relation(&def.name) {
                    return Err(Error::DuplicateRelation {
                        kind: "relation",
                        name: def.name.clone(),
                    });
                }
                if let Some(missing) = def.inputs().into_iter().find(|i| !m.has_relation(i)) {
                    return Err(Error::UndefinedRelation {
                        kind: "relation",
                        name: missing.to_string(),
                    });
                }
                def.id = m.next_table_id;
                m.next_table_id += 1;
                m.privileges.insert(def.name.clone(), principal.new_acl());
                m.views.insert(
                    def.name.clone(),
                    ViewState {
                        def: def.clone(),
                        files: Vec::new(),
                        closed_through: None,
                        checkpoint: None,
                    },
                );
            }
            created = true;
            Ok(())
        })
        .await?;
    if !created {
        return Ok(done);
    }
    let warning = views.iter().find_map(|(_, plan)| unbounded_join(plan));
    for (def, plan) in views {
        tracing::info!(view = %def.name, input = %def.input, "materialized view created");
        if let Err(e) = db
            .views()
            .start(def.clone(), plan.clone(), Replay::Default)
            .await
        {
            tracing::error!(view = %def.name, error = %e, "materialized view cannot start");
            db.views().failed(def, &e);
        }
    }
    Ok(match warning {
        Some(warning) => Output::Warned {
            warning,
            output: Box::new(done),
        },
        None => done,
    })
}

/// The catalog entry of a view planned as `plan`, before the commit gives it an id.
fn view_def(name: &str, query: String, emit_on_close: bool, plan: &ViewPlan) -> ViewDef {
    ViewDef {
        id: 0,
        name: name.to_string(),
        query,
        emit_on_close,
        input: plan.inputs()[0].name.clone(),
        relations: plan.branches.iter().map(|b| b.input.name.clone()).collect(),
        columns: plan.columns.clone(),
        time_columns: plan.time_columns.clone(),
        created_at_ms: chrono::Utc::now().timestamp_millis(),
        retention: None,
        state_ttl: None,
        updating: plan.updating,
        part_of: None,
    }
}

/// A view's `state.ttl` in µs.
pub fn state_ttl_us(ttl: Option<&str>) -> Result<Option<i64>> {
    let Some(ttl) = ttl else {
        return Ok(None);
    };
    let us = crate::source::options::parse_duration("state.ttl", ttl)?.as_micros();
    match i64::try_from(us) {
        Ok(us) if us > 0 => Ok(Some(us)),
        _ => Err(Error::InvalidParameter(format!(
            "invalid value \"{ttl}\" for option \"state.ttl\": expected a positive duration"
        ))),
    }
}

/// The relations a view reads that exist before it: its inputs and its parts' inputs, but
/// not its parts.
pub fn read_relations(plan: &ViewPlan) -> Vec<&str> {
    let parts: Vec<&str> = plan.parts.iter().map(|p| p.name.as_str()).collect();
    std::iter::once(plan)
        .chain(plan.parts.iter().map(|p| &p.plan))
        .flat_map(ViewPlan::inputs)
        .map(|input| input.name.as_str())
        .filter(|name| !parts.contains(name))
        .collect()
}

/// A regular join keeps every row of a side whose rows never go (an append-only relation):
/// its state grows with that input, which the user is told at `CREATE`.
fn unbounded_join(plan: &ViewPlan) -> Option<Warning> {
    let join = plan.join.as_ref()?;
    let kept: Vec<String> = plan
        .branches
        .iter()
        .enumerate()
        .filter(|(i, b)| !b.input.updating && join.keeps_for_ever(*i))
        .map(|(_, b)| {
            // A part as the user wrote it: a subquery.
            let part = plan.parts.iter().find(|p| p.name == b.input.name);
            match part.and_then(|p| p.alias.as_deref()) {
                Some(alias) => format!("subquery \"{alias}\""),
                None => format!("\"{}\"", b.input.name),
            }
        })
        .collect();
    if kept.is_empty() {
        return None;
    }
    Some(Warning {
        message: format!(
            "the join keeps every row of {} for as long as the view exists: its state grows \
             with that input",
            kept.join(" and ")
        ),
        hint: Some(
            "Join a table with a primary key or a view that aggregates the stream, whose rows \
             are replaced rather than added, or create the view WITH (state.ttl = '1 hour') to \
             forget rows idle for longer; sluice_catalog.materialized_views shows the state's \
             size."
                .into(),
        ),
    })
}

/// `ALTER MATERIALIZED VIEW name SET (retention = …) | RESET (retention) | REBUILD`.
pub async fn alter_view(
    db: &Database,
    name: &str,
    action: &AlterView,
    principal: &Principal,
) -> Result<Output> {
    privileges::require_owner(&db.storage().manifest(), principal, name)?;
    if let Some(whole) = db
        .storage()
        .manifest()
        .view(name)
        .and_then(|v| v.def.part_of.clone())
    {
        return Err(Error::PartOfView {
            action: "alter",
            name: name.to_string(),
            whole,
        });
    }
    let undefined = || Error::UndefinedRelation {
        kind: "materialized view",
        name: name.to_string(),
    };
    match action {
        AlterView::Retention(retention) => {
            db.storage()
                .commit(|m| {
                    let state = m.views.get_mut(name).ok_or_else(undefined)?;
                    state.def.retention = retention.clone();
                    Ok(())
                })
                .await?;
        }
        AlterView::Rebuild => {
            let manifest = db.storage().manifest();
            let state = manifest.view(name).ok_or_else(undefined)?;
            let dependents: Vec<String> = manifest
                .views
                .values()
                .filter(|v| v.def.reads(name))
                .map(|v| v.def.name.clone())
                .collect();
            if !dependents.is_empty() {
                return Err(Error::DependentObjects {
                    action: "rebuild",
                    kind: "materialized view",
                    name: name.to_string(),
                    dependents,
                });
            }
            let plan = db.plan_stored_view(&state.def).await?;
            db.views().remove(name);
            // A new id: the old files and state belong to a view that no longer exists.
            let mut def = state.def.clone();
            db.storage()
                .commit(|m| {
                    let next_id = m.next_table_id;
                    let state = m
                        .views
                        .get_mut(name)
                        .filter(|v| v.def.id == def.id)
                        .ok_or_else(undefined)?;
                    def.id = next_id;
                    *state = ViewState {
                        def: def.clone(),
                        files: Vec::new(),
                        closed_through: None,
                        checkpoint: None,
                    };
                    m.next_table_id += 1;
                    Ok(())
                })
                .await?;
            tracing::info!(view = %name, "materialized view rebuilding from its input");
            if let Err(e) = db.views().start(def.clone(), plan, Replay::Earliest).await {
                tracing::error!(view = %name, error = %e, "materialized view cannot start");
                db.views().failed(def, &e);
            }
        }
    }
    Ok(Output::Command {
        tag: "ALTER MATERIALIZED VIEW",
        rows: None,
    })
}

pub async fn drop_views(
    db: &Database,
    names: &[String],
    if_exists: bool,
    cascade: bool,
    principal: &Principal,
) -> Result<Output> {
    let drop = Drop {
        names,
        if_exists,
        cascade,
        principal,
    };
    let removed = commit_drop(db, "materialized view", drop, |m, n| m.views.remove(n)).await?;
    let (mut dropped, dependents) = removed;
    dropped.extend(dependents);
    forget_views(db, dropped).await;
    Ok(Output::Command {
        tag: "DROP MATERIALIZED VIEW",
        rows: None,
    })
}
