//! What a running view reports, for `sluice_catalog.materialized_views` and `/metrics`.

use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Reading what its input already held.
    Backfilling,
    Running,
    /// Holding `view_max_open_groups` open groups, or state that does not fit the memory pool:
    /// takes no input (its source waits) until there is room; see `last_error`.
    Stalled,
    /// Stopped by an error; see `last_error`.
    Failed,
    /// Running, but checkpoints fail, so its state is not durable; see `last_error`. (Shown
    /// only: the view itself runs on as `running`.)
    Retrying,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Backfilling,
        Status::Running,
        Status::Stalled,
        Status::Failed,
        Status::Retrying,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Backfilling => "backfilling",
            Status::Running => "running",
            Status::Stalled => "stalled",
            Status::Failed => "failed",
            Status::Retrying => "retrying",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub view: String,
    pub input: String,
    /// The view it runs a subquery of, for a view's part.
    pub part_of: Option<String>,
    pub emit_on_close: bool,
    pub status: Status,
    pub rows_in: u64,
    pub rows_late: u64,
    /// Final rows (closed windows) produced.
    pub rows_out: u64,
    /// The input's watermark as the view last saw it, epoch µs.
    pub watermark_us: Option<i64>,
    /// Every window ending at or before this is final.
    pub closed_through_us: Option<i64>,
    pub open_groups: u64,
    /// Bytes of all its state: the operator's and its joins'.
    pub state_bytes: u64,
    /// Rows its joins hold (distinct rows per side), and their bytes.
    pub join_rows: u64,
    pub join_state_bytes: u64,
    pub backfill_rows_total: u64,
    pub backfill_rows_done: u64,
    /// When the live results were last refreshed, epoch µs.
    pub refreshed_at_us: Option<i64>,
    pub last_error: Option<String>,
    /// Times it failed, or checkpoints began to fail (for `sluicedb_view_errors_total`).
    pub errors: u64,
    /// Why checkpoints fail, while they do: the view's state is not durable.
    checkpoint_error: Option<String>,
}

#[derive(Debug)]
pub struct ViewStats(Mutex<Snapshot>);

impl ViewStats {
    pub fn new(view: &str, input: &str, emit_on_close: bool) -> Self {
        ViewStats(Mutex::new(Snapshot {
            view: view.to_string(),
            input: input.to_string(),
            part_of: None,
            emit_on_close,
            status: Status::Backfilling,
            rows_in: 0,
            rows_late: 0,
            rows_out: 0,
            watermark_us: None,
            closed_through_us: None,
            open_groups: 0,
            state_bytes: 0,
            join_rows: 0,
            join_state_bytes: 0,
            backfill_rows_total: 0,
            backfill_rows_done: 0,
            refreshed_at_us: None,
            last_error: None,
            errors: 0,
            checkpoint_error: None,
        }))
    }

    /// Its numbers; while checkpoints fail, a running or backfilling view shows as `retrying`
    /// with their error (its own status and error come back when they commit).
    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(error) = snapshot.checkpoint_error.take()
            && matches!(snapshot.status, Status::Running | Status::Backfilling)
        {
            snapshot.status = Status::Retrying;
            snapshot.last_error = Some(error);
        }
        snapshot
    }

    /// Checkpoints fail with `error`, or (`None`) commit again.
    pub fn checkpoints_failing(&self, error: Option<&str>) {
        self.update(|s| {
            s.errors += u64::from(s.checkpoint_error.is_none() && error.is_some());
            s.checkpoint_error = error.map(str::to_string);
        });
    }

    pub fn status(&self) -> Status {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).status
    }

    pub fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        f(&mut self.0.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub fn failed(&self, error: &str) {
        self.update(|s| {
            s.status = Status::Failed;
            s.last_error = Some(error.to_string());
            s.errors += 1;
        });
    }
}
