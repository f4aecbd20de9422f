"""Feature computation, point in time: the one feature spec, its plan and builder, the
feature matrix, cohorts and labels, where a person lives on a date, and clear-case profiles."""
