//! Roles and privileges where tools look for them: `pg_authid` and `pg_roles` (psql's `\du`),
//! `has_table_privilege` (pickers that list only what the user may read), and the `aclitem`
//! text of `pg_class.relacl` (psql's `\dp`). The model is [`crate::catalog::roles`].

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::catalog::roles::{Principal, Privilege, Roles};
use crate::catalog::snapshot::Snapshot;
use crate::catalog::{DATABASE_NAME, SCHEMA_NAME};
use crate::error::Error;

/// A role's oid: the same for a name wherever and whenever it is asked.
pub fn role_oid(name: &str) -> i32 {
    // FNV-1a, folded into the range Postgres gives roles made after bootstrap.
    let hash = name.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    16_384 + (hash % 1_000_000_000) as i32
}

/// `pg_authid` (with `rolpassword` NULL: verifiers stay in the manifest) or `pg_roles`
/// (`********`), in the columns of datafusion-pg-catalog's tables of those names.
#[derive(Debug)]
pub struct RolesTable {
    pub schema: SchemaRef,
    pub roles: Arc<Roles>,
    /// `pg_roles`: the password column reads `********`, as in Postgres.
    pub masked: bool,
}

#[async_trait]
impl Snapshot for RolesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn rows(&self, state: &dyn Session) -> Result<RecordBatch> {
        let roles = self.roles.all(&Principal::of(state.config().options()));
        let n = roles.len();
        let flag = |f: &dyn Fn(usize) -> bool| -> ArrayRef {
            Arc::new((0..n).map(|i| Some(f(i))).collect::<BooleanArray>())
        };
        let columns = self
            .schema
            .fields()
            .iter()
            .map(|field| {
                let values: ArrayRef = match field.name().as_str() {
                    "oid" => Arc::new(
                        roles
                            .iter()
                            .map(|(name, _)| Some(role_oid(name)))
                            .collect::<Int32Array>(),
                    ),
                    "rolname" => Arc::new(
                        roles
                            .iter()
                            .map(|(name, _)| Some(name.as_str()))
                            .collect::<StringArray>(),
                    ),
                    "rolsuper" | "rolcreaterole" | "rolcreatedb" | "rolbypassrls" => {
                        flag(&|i| roles[i].1.superuser)
                    }
                    "rolinherit" => flag(&|_| true),
                    "rolreplication" => flag(&|_| false),
                    "rolcanlogin" => flag(&|i| roles[i].1.login),
                    "rolconnlimit" => Arc::new(Int32Array::from(vec![-1; n])),
                    "rolpassword" if self.masked => {
                        Arc::new(StringArray::from(vec!["********"; n]))
                    }
                    _ => return Ok(new_null_array(field.data_type(), n)),
                };
                cast(&values, field.data_type())
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// `has_table_privilege([user,] table, privilege)`, answered from the catalog's grants (it
/// was always true: Grafana's and Superset's pickers offered what the user could not read).
#[derive(Debug)]
struct HasTablePrivilege {
    roles: Arc<Roles>,
    signature: Signature,
}

impl PartialEq for HasTablePrivilege {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl Eq for HasTablePrivilege {}

impl std::hash::Hash for HasTablePrivilege {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        "has_table_privilege".hash(state);
    }
}

pub fn register(ctx: &SessionContext, roles: Arc<Roles>) {
    ctx.register_udf(ScalarUDF::new_from_impl(HasTablePrivilege {
        roles,
        signature: Signature::one_of(
            vec![TypeSignature::Any(2), TypeSignature::Any(3)],
            Volatility::Stable,
        ),
    }));
}

/// The privileges a `has_table_privilege` string names (`'SELECT'`, `'select, insert'`, `'SELECT
/// WITH GRANT OPTION'`): any of them is enough. `None` stands for the ones no relation here
/// grants, which only owners hold.
fn privileges(text: &str) -> Result<Vec<Option<Privilege>>, Error> {
    text.split(',')
        .map(|word| {
            let word = word.trim().to_ascii_uppercase();
            let word = word.strip_suffix(" WITH GRANT OPTION").unwrap_or(&word);
            match word.trim() {
                "SELECT" => Ok(Some(Privilege::Select)),
                "INSERT" => Ok(Some(Privilege::Insert)),
                "UPDATE" => Ok(Some(Privilege::Update)),
                "DELETE" => Ok(Some(Privilege::Delete)),
                "TRUNCATE" | "REFERENCES" | "TRIGGER" => Ok(None),
                other => Err(Error::InvalidParameter(format!(
                    "unrecognized privilege type: \"{other}\""
                ))),
            }
        })
        .collect()
}

impl HasTablePrivilege {
    /// One call: `user` may be the caller.
    fn answer(&self, user: &Principal, table: &str, privilege: &str) -> Result<bool, Error> {
        let wanted = privileges(privilege)?;
        let name = table.trim_matches('"');
        let (schema, relation) = match name.split_once('.') {
            Some((schema, relation)) => (schema.trim_matches('"'), relation.trim_matches('"')),
            None => (SCHEMA_NAME, name),
        };
        if schema != SCHEMA_NAME && schema != DATABASE_NAME {
            // The catalogs: readable by every role, written by none.
            return Ok(wanted.contains(&Some(Privilege::Select)));
        }
        let m = self.roles.manifest();
        if m.relation_kind(relation).is_none() {
            return Err(Error::UndefinedRelation {
                kind: "relation",
                name: table.to_string(),
            });
        }
        Ok(wanted.iter().any(|privilege| match privilege {
            Some(privilege) => user.may(&m, relation, *privilege),
            None => user.owns(&m, relation),
        }))
    }
}

impl ScalarUDFImpl for HasTablePrivilege {
    fn name(&self) -> &str {
        "has_table_privilege"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let caller = Principal::of(&args.config_options);
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (user, table, privilege) = match arrays.as_slice() {
            [table, privilege] => (None, table, privilege),
            [user, table, privilege] => (Some(cast(user, &DataType::Utf8)?), table, privilege),
            _ => {
                return Err(DataFusionError::Plan(
                    "has_table_privilege takes 2 or 3 arguments".into(),
                ));
            }
        };
        // A table given by oid is not resolved here: NULL, which filters it out.
        let names = match table.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                Some(cast(table, &DataType::Utf8)?)
            }
            _ => None,
        };
        let privilege = cast(privilege, &DataType::Utf8)?;
        let privilege = privilege.as_string::<i32>();
        let answers = (0..table.len())
            .map(|i| {
                let Some(names) = names.as_ref().map(|n| n.as_string::<i32>()) else {
                    return Ok(None);
                };
                if names.is_null(i) || privilege.is_null(i) {
                    return Ok(None);
                }
                let who = match &user {
                    Some(users) if users.is_null(i) => return Ok(None),
                    Some(users) => self.roles.principal(users.as_string::<i32>().value(i)),
                    None => caller.clone(),
                };
                self.answer(&who, names.value(i), privilege.value(i))
                    .map(Some)
                    .map_err(DataFusionError::from)
            })
            .collect::<Result<BooleanArray>>()?;
        crate::pg::functions::scalar_if_scalar(&args.args, Arc::new(answers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn privilege_strings_are_read_as_postgres_reads_them() {
        assert_eq!(privileges("select").unwrap(), vec![Some(Privilege::Select)]);
        assert_eq!(
            privileges("SELECT WITH GRANT OPTION, insert").unwrap(),
            vec![Some(Privilege::Select), Some(Privilege::Insert)]
        );
        assert_eq!(privileges("UPDATE").unwrap(), vec![Some(Privilege::Update)]);
        assert_eq!(privileges("truncate").unwrap(), vec![None]);
        assert_eq!(privileges("SELEKT").unwrap_err().sqlstate(), "22023");
        assert_ne!(role_oid("reader"), role_oid("writer"));
        assert!(role_oid("reader") >= 16_384);
    }
}
