"""What training tells the layers above it, so that it never imports them."""

from django.dispatch import Signal

# Sent inside the run's tenant context once a run ended without success: failed (fail_run),
# cancelled or reaped (liveness.stop_run, inside its transaction). Argument: run_id. The
# registry withdraws a version the run had published meanwhile (failed, vectors dropped).
run_failed = Signal()
