"""Use cases: business rules over the ``Store`` protocol, raising ``BrokerError``s."""
