//! The checkpoint barrier: the marker that cuts every stream at one checkpoint. The engine
//! carries it after the rows before it, and a view with several inputs aligns it; what each
//! participant reports when the barrier passes goes to whoever started the round, through the
//! round's handle, which the engine does not look into.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

pub struct Barrier {
    pub id: u64,
    /// The coordinator's side of the round (where reports go).
    round: Arc<dyn Any + Send + Sync>,
}

impl Barrier {
    pub fn new(id: u64, round: Arc<dyn Any + Send + Sync>) -> Self {
        Barrier { id, round }
    }

    /// The round's handle, if it is a `T`.
    pub fn round<T: Any>(&self) -> Option<&T> {
        self.round.downcast_ref()
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Barrier({})", self.id)
    }
}
