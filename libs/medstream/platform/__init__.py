"""The platform floor: what every service stands on, with no clinical knowledge.

New platform code lands here (security first); older platform modules (settings,
kafka, consumer, outbox, db) move in when a change touches them. The layer test keeps
this floor from importing the domain packages or the operations code above it.
"""
