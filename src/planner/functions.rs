//! The window table functions `TUMBLE`, `HOP`, `CUMULATE` and `SESSION` as DataFusion sees them.
//!
//! `FROM TUMBLE(clicks, ts, INTERVAL '10' SECOND)` plans as a scan of a [`WindowedRelation`]:
//! the input's columns plus `window_start`, `window_end` and `window_time`. The view planner
//! ([`super::plan_view`]) recognises that scan and replaces the aggregation above it with the
//! streaming window operator; only a one-off query scans the relation ([`super::adhoc`]). Flink's spelling
//! (`TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), …))`) is rewritten to this one by the SQL parser.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::datasource::TableType;
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;

use crate::catalog::types::ColumnType;
use crate::error::Error;
use crate::storage::Storage;
use crate::stream::plan::InputRelation;
use crate::stream::window::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowKind, is_window_column};

/// The names of the columns a window table function adds.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Tumble,
    Hop,
    Cumulate,
    Session,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Tumble => "tumble",
            Shape::Hop => "hop",
            Shape::Cumulate => "cumulate",
            Shape::Session => "session",
        }
    }

    fn usage(self) -> &'static str {
        match self {
            Shape::Tumble => "TUMBLE(relation, time_column, INTERVAL 'size')",
            Shape::Hop => "HOP(relation, time_column, INTERVAL 'slide', INTERVAL 'size')",
            Shape::Cumulate => "CUMULATE(relation, time_column, INTERVAL 'step', INTERVAL 'size')",
            Shape::Session => "SESSION(relation, time_column, INTERVAL 'gap')",
        }
    }
}

/// Registers the four window table functions and `lookup`.
pub fn register(ctx: &SessionContext, storage: &Arc<Storage>) {
    ctx.register_udtf(
        "lookup",
        Arc::new(LookupFunction {
            storage: Arc::clone(storage),
        }),
    );
    for shape in [Shape::Tumble, Shape::Hop, Shape::Cumulate, Shape::Session] {
        ctx.register_udtf(
            shape.name(),
            Arc::new(WindowFunction {
                shape,
                storage: Arc::clone(storage),
            }),
        );
    }
}

#[derive(Debug)]
struct WindowFunction {
    shape: Shape,
    storage: Arc<Storage>,
}

impl TableFunctionImpl for WindowFunction {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        self.windowed(args)
            .map(|r| Arc::new(r) as Arc<dyn TableProvider>)
            .map_err(DataFusionError::from)
    }
}

impl WindowFunction {
    fn windowed(&self, args: &[Expr]) -> crate::error::Result<WindowedRelation> {
        let usage = || Error::Syntax(format!("window function takes {}", self.shape.usage()));
        let name_of = |e: &Expr| match e {
            Expr::Column(c) => Some(c.name.clone()),
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => Some(s.clone()),
            _ => None,
        };
        let (relation, time_column) = match args {
            [rel, ts, ..] => (
                name_of(rel).ok_or_else(usage)?,
                name_of(ts).ok_or_else(usage)?,
            ),
            _ => return Err(usage()),
        };
        let intervals = args[2..]
            .iter()
            .map(interval_us)
            .collect::<crate::error::Result<Vec<i64>>>()?;
        let kind = match (self.shape, intervals.as_slice()) {
            (Shape::Tumble, [size]) => WindowKind::Tumble { size: *size },
            (Shape::Hop, [slide, size]) => WindowKind::Hop {
                slide: *slide,
                size: *size,
            },
            (Shape::Cumulate, [step, size]) => {
                if size % step != 0 {
                    return Err(Error::InvalidParameter(
                        "CUMULATE needs a size that is a multiple of the step".into(),
                    ));
                }
                WindowKind::Cumulate {
                    step: *step,
                    size: *size,
                }
            }
            (Shape::Session, [gap]) => WindowKind::Session { gap: *gap },
            _ => return Err(usage()),
        };
        let manifest = self.storage.manifest();
        let input = super::lookup(&manifest, &relation)?;
        let Some(time_field) = input
            .schema
            .fields()
            .iter()
            .find(|f| *f.name() == time_column)
        else {
            return Err(Error::UndefinedColumn { name: time_column });
        };
        let time_type = match time_field.data_type() {
            t @ DataType::Timestamp(_, _) => t.clone(),
            other => {
                let name = ColumnType::storable(other).map_or(other.to_string(), |t| t.pg_name);
                return Err(Error::DatatypeMismatch {
                    message: format!(
                        "window time column \"{time_column}\" must be timestamp or timestamptz, not {name}"
                    ),
                    hint: None,
                });
            }
        };
        // A window over a view's windows: the input's own bounds stay visible as
        // input_window_start, …; window_start, … are the new window's.
        let mut fields: Vec<Field> = input
            .schema
            .fields()
            .iter()
            .map(|f| match is_window_column(f.name()) {
                true => f.as_ref().clone().with_name(format!("input_{}", f.name())),
                false => f.as_ref().clone(),
            })
            .collect();
        for name in [WINDOW_START, WINDOW_END, WINDOW_TIME] {
            fields.push(Field::new(name, time_type.clone(), false));
        }
        Ok(WindowedRelation {
            input,
            time_column,
            kind,
            schema: Arc::new(Schema::new(fields)),
        })
    }
}

/// Microseconds of a fixed-length interval argument.
fn interval_us(expr: &Expr) -> crate::error::Result<i64> {
    let bad = |shown: String| {
        Error::InvalidParameter(format!(
            "window sizes must be positive intervals of fixed length (seconds to days), not {shown}"
        ))
    };
    let us = match expr {
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months != 0 => {
            return Err(bad(format!("{} months", v.months)));
        }
        Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) => {
            i64::from(v.days) * 86_400_000_000 + v.nanoseconds / 1_000
        }
        Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => {
            i64::from(v.days) * 86_400_000_000 + i64::from(v.milliseconds) * 1_000
        }
        _ => return Err(bad(expr.to_string())),
    };
    if us <= 0 {
        return Err(bad(format!("{us} µs")));
    }
    Ok(us)
}

/// A relation with window columns: planned by views, scanned by one-off queries.
#[derive(Debug)]
pub struct WindowedRelation {
    pub input: InputRelation,
    pub time_column: String,
    pub kind: WindowKind,
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for WindowedRelation {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    /// A one-off query of the windows ([`super::adhoc`]); a view never scans this relation.
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (session, provider) = relation_provider(state, &self.input.name).await?;
        let name = TableReference::bare(self.input.name.as_str());
        let input = LogicalPlanBuilder::scan(name, provider_as_source(provider), None)?.build()?;
        let windowed = super::adhoc::windowed(input, &self.time_column, self.kind, &self.schema)
            .map_err(DataFusionError::from)?;
        let plan = match projection {
            Some(columns) => LogicalPlanBuilder::from(windowed)
                .select(columns.iter().copied())?
                .build()?,
            None => windowed,
        };
        session.create_physical_plan(&plan).await
    }
}

/// `lookup(relation)`, what `relation FOR SYSTEM_TIME AS OF PROCTIME()` is rewritten to: the
/// relation as a lookup join's dimension, whose rows as they are when a row of the other side
/// arrives are the rows it joins.
#[derive(Debug)]
struct LookupFunction {
    storage: Arc<Storage>,
}

impl TableFunctionImpl for LookupFunction {
    fn call(&self, args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let name = match args {
            [Expr::Column(c)] => c.name.clone(),
            [Expr::Literal(ScalarValue::Utf8(Some(s)), _)] => s.clone(),
            _ => {
                return Err(Error::Syntax(
                    "FOR SYSTEM_TIME AS OF PROCTIME() follows a relation's name".into(),
                )
                .into());
            }
        };
        let input = super::lookup(&self.storage.manifest(), &name)?;
        Ok(Arc::new(LookupRelation { input }))
    }
}

/// A relation read as a lookup join's dimension: planned by views; a one-off query reads the
/// relation as it is now.
#[derive(Debug)]
pub struct LookupRelation {
    pub input: InputRelation,
}

#[async_trait]
impl TableProvider for LookupRelation {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.input.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (_, provider) = relation_provider(state, &self.input.name).await?;
        provider.scan(state, projection, filters, limit).await
    }
}

/// The session's state and the provider of our relation `name`, which the window functions
/// and `lookup` read when a one-off query scans them.
async fn relation_provider<'s>(
    state: &'s dyn Session,
    name: &str,
) -> Result<(&'s SessionState, Arc<dyn TableProvider>)> {
    let session = state
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("a session without its state".into()))?;
    let provider = session
        .schema_for_ref(TableReference::bare(name))?
        .table(name)
        .await?
        .ok_or_else(|| {
            DataFusionError::from(Error::UndefinedRelation {
                kind: "relation",
                name: name.to_string(),
            })
        })?;
    Ok((session, provider))
}
