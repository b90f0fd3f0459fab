"""pmv.analysis"""
