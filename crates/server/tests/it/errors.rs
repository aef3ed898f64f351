//! Bad input of every kind: status codes and OperationOutcomes (tests being written).
