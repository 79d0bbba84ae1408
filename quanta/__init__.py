"""QuantaDB: an asyncio-native, reactive, embedded data store."""
