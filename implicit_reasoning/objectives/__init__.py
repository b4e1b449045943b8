"""The pure math of each method: LaTRO, Markovian, VQ, STaR, DPO, PPO, advantages, curriculum rules, rewards."""
