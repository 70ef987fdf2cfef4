"""retrievalkit.serve"""
