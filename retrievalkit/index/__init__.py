"""retrievalkit.index"""
