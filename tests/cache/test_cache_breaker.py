from cache.breaker import CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_on_failure_lets_one_probe_through_and_closes_on_success():
    clock = FakeClock()
    b = CircuitBreaker(backoff_s=1.0, max_backoff_s=8.0, clock=clock)
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    clock.now = 1.0
    assert b.allow()  # the probe
    assert not b.allow()  # everyone else still skips Redis while it is out
    b.success()
    assert b.state == "closed" and b.allow()


def test_failed_probes_double_the_back_off_up_to_the_cap():
    clock = FakeClock()
    b = CircuitBreaker(backoff_s=1.0, max_backoff_s=3.0, clock=clock)
    b.failure()
    waits = []
    for _ in range(4):
        waits.append(b.seconds_until_probe())
        clock.now += b.seconds_until_probe()
        assert b.allow()
        b.failure()
    assert waits == [1.0, 2.0, 3.0, 3.0]
    clock.now += 3.0
    assert b.allow()
    b.success()
    b.failure()
    assert b.seconds_until_probe() == 1.0  # success resets the back-off


def test_failures_of_calls_already_in_flight_do_not_extend_the_back_off():
    clock = FakeClock()
    b = CircuitBreaker(backoff_s=1.0, max_backoff_s=8.0, clock=clock)
    for _ in range(50):
        b.failure()
    assert b.seconds_until_probe() == 1.0
    assert b.opened_total == 1


def test_stale_success_does_not_close_an_open_breaker():
    clock = FakeClock()
    b = CircuitBreaker(backoff_s=1.0, max_backoff_s=8.0, clock=clock)
    b.failure()
    b.success()  # a call that started before the failure
    assert b.state == "open"


def test_a_cancelled_probe_does_not_wedge_the_breaker():
    clock = FakeClock()
    b = CircuitBreaker(backoff_s=1.0, max_backoff_s=8.0, clock=clock)
    b.failure()
    clock.now = 1.0
    assert b.allow()
    b.abandon()
    assert b.allow()
