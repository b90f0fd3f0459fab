"""pmv.data"""
