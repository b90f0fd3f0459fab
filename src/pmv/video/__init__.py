"""pmv.video"""
