//! Tasks and their state machine. The states and the JSON shape are the reference's; the
//! transitions are enforced here, once, for the REST API, the MCP tools and peer updates.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A task's lifecycle state (wire strings are the reference's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, nobody works on it yet.
    Submitted,
    /// Being worked on.
    Working,
    /// Paused until the requester answers (`:continue`).
    InputRequired,
    /// Cancel requested, not yet confirmed.
    Cancelling,
    /// Finished successfully (terminal).
    Completed,
    /// Finished unsuccessfully (terminal).
    Failed,
    /// Cancelled (terminal).
    Canceled,
}

impl TaskState {
    /// Every state, for error messages and schemas.
    pub const ALL: [TaskState; 7] = [
        TaskState::Submitted,
        TaskState::Working,
        TaskState::InputRequired,
        TaskState::Cancelling,
        TaskState::Completed,
        TaskState::Failed,
        TaskState::Canceled,
    ];

    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Submitted => "submitted",
            TaskState::Working => "working",
            TaskState::InputRequired => "input_required",
            TaskState::Cancelling => "cancelling",
            TaskState::Completed => "completed",
            TaskState::Failed => "failed",
            TaskState::Canceled => "canceled",
        }
    }

    /// Parses a wire string (also the US spelling `cancelled` some clients use).
    pub fn parse(s: &str) -> Option<TaskState> {
        match s {
            "cancelled" => Some(TaskState::Canceled),
            _ => TaskState::ALL.into_iter().find(|st| st.as_str() == s),
        }
    }

    /// Completed, failed and canceled never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled
        )
    }

    /// Whether the state machine allows `self → next`.
    ///
    /// submitted → working | input_required | cancelling | completed | failed | canceled;
    /// working → working | input_required | cancelling | completed | failed | canceled;
    /// input_required → working | input_required | cancelling | completed | failed | canceled;
    /// cancelling → cancelling | canceled | failed; nothing goes back to submitted, and a
    /// terminal state only "moves" to itself (an idempotent repeat that changes nothing).
    pub fn can_move_to(self, next: TaskState) -> bool {
        use TaskState::*;
        if self.is_terminal() {
            return self == next;
        }
        match (self, next) {
            (_, Submitted) => self == Submitted,
            (Cancelling, Cancelling | Canceled | Failed) => true,
            (Cancelling, _) => false,
            _ => true,
        }
    }
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A task as stored and as returned by `GET /tasks/{id}` (the reference's shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Task {
    /// `task_…` id (or a client-chosen one).
    pub id: String,
    /// Current state.
    pub status: TaskState,
    /// Creation time, ISO-8601.
    pub created_at: String,
    /// Last change, ISO-8601.
    pub updated_at: String,
    /// What the task asks for (`{role, parts}` typically).
    pub payload: Value,
    /// Results attached by updates, oldest first.
    pub artifacts: Vec<Value>,
    /// Messages exchanged about the task (continuations), oldest first.
    pub history: Vec<Value>,
    /// Message that created the task, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_message_id: Option<String>,
    /// Conversation the task belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Error text of a failed task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// True when a peer created the task (we are the worker).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_peer: bool,
    /// The peer this task is shared with: its updates go there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::TaskState::*;
    use super::*;

    #[test]
    fn terminal_states_stick() {
        for t in [Completed, Failed, Canceled] {
            for n in TaskState::ALL {
                assert_eq!(t.can_move_to(n), t == n, "{t} -> {n}");
            }
        }
    }

    #[test]
    fn main_paths_are_allowed_and_backwards_is_not() {
        assert!(Submitted.can_move_to(Working));
        assert!(Working.can_move_to(Completed));
        assert!(Working.can_move_to(InputRequired));
        assert!(InputRequired.can_move_to(Working));
        assert!(Working.can_move_to(Cancelling));
        assert!(Cancelling.can_move_to(Canceled));
        assert!(!Cancelling.can_move_to(Working));
        assert!(!Working.can_move_to(Submitted));
        assert_eq!(TaskState::parse("cancelled"), Some(Canceled));
        assert_eq!(TaskState::parse("bogus"), None);
    }
}
