//! The compact table against DataFusion's own for the same keys.

use datafusion::arrow::array::Int64Array;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::physical_plan::aggregates::group_values::new_group_values;
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use rand::{Rng, SeedableRng};

use super::*;

/// Random batches of keys (runs, repeats, NULLs, extremes) get the group indices DataFusion's
/// table gives them, and emitting all or the first groups gives the same keys, after which
/// both go on alike.
#[test]
fn groups_are_numbered_as_datafusion_numbers_them() {
    for seed in 0..20 {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
        let mut ours = compact_keys(&DataType::Int64).unwrap();
        let mut theirs = new_group_values(schema, &GroupOrdering::None).unwrap();
        let spread = [10, 1_000, 100_000][seed as usize % 3];
        for round in 0..40 {
            let keys: Int64Array = (0..rng.random_range(0..2_000))
                .map(|_| match rng.random_range(0..100) {
                    0 => None,
                    1 => Some(i64::MIN),
                    2 => Some(i64::MAX),
                    _ => Some(rng.random_range(-spread..spread)),
                })
                .collect();
            let cols: Vec<ArrayRef> = vec![Arc::new(keys)];
            let (mut a, mut b) = (Vec::new(), Vec::new());
            ours.intern(&cols, &mut a).unwrap();
            theirs.intern(&cols, &mut b).unwrap();
            assert_eq!(a, b, "seed {seed} round {round}");
            assert_eq!(ours.len(), theirs.len());
            if round % 10 == 9 {
                let emit = match rng.random_bool(0.5) {
                    true => EmitTo::All,
                    false => EmitTo::First(rng.random_range(0..=ours.len())),
                };
                assert_eq!(ours.emit(emit).unwrap(), theirs.emit(emit).unwrap());
                assert_eq!(ours.len(), theirs.len());
            }
        }
    }
}

/// A million keys take less than a quarter of the bytes DataFusion's table takes.
#[test]
fn a_million_keys_take_a_few_bytes_each() {
    let keys: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_iter_values(0..1_000_000))];
    let mut ours = compact_keys(&DataType::Int64).unwrap();
    let schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
    let mut theirs = new_group_values(schema, &GroupOrdering::None).unwrap();
    let mut groups = Vec::new();
    ours.intern(&keys, &mut groups).unwrap();
    theirs.intern(&keys, &mut groups).unwrap();
    assert!(ours.size() <= 17_000_000, "{}", ours.size());
    assert!(
        ours.size() * 2 < theirs.size(),
        "{} {}",
        ours.size(),
        theirs.size()
    );
}
