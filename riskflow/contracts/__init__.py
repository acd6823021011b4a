"""The contracts between stages: detection events, assessments, leases, incidents, notifications,
replay records, and the failure kinds."""
