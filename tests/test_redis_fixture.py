def test_redis_round_trip(redis_client):
    redis_client.xadd("s", {"a": "1"})
    assert redis_client.xlen("s") == 1
