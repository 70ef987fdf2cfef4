"""retrievalkit.data"""
