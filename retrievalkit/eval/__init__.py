"""retrievalkit.eval"""
