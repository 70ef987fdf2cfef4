"""retrievalkit.models"""
