"""What the AWS executors share: clients and retries, smart waiting, remote-work records, table specs."""
