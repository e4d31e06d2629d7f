"""The queue service: the electronic walk-in queue and the routing of calls to free agents."""
